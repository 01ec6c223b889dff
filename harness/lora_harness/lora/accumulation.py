"""Gradient accumulation measured on a trainer: k micro-batches against one batch of their rows.

The reference is the gradient of the loss's own normalisation (mlx-lm's default_loss: the
mean over all loss tokens) on one batch holding every row of the window. The trainer is
run on the window with a `GradientRecorder` as its optimizer, so what its step hands the
optimizer is measured, not re-implemented. A second run with a window and a half counts
the updates: a last, shorter window must be applied, not dropped.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from lora_harness.lora.recorder import GradientRecorder, handed, updates

# trainer(model, optimizer, micro_batches, k): runs one training pass over micro_batches
Trainer = Callable[[nn.Module, object, list, int], None]


@dataclass
class AccumulationProbe:
    """What the check measures: a trainer, its k, and micro-batches from the run's data."""

    trainer: Trainer
    trainer_name: str
    steps: int  # k
    micro_batches: list  # at least k + 1 of (tokens, lengths)


def one_batch(micro_batches: list) -> tuple[mx.array, mx.array]:
    """Every row of the micro-batches in one batch, right-padded to the widest."""
    width = max(tokens.shape[1] for tokens, _ in micro_batches)
    padded = [mx.pad(t, [(0, 0), (0, width - t.shape[1])]) for t, _ in micro_batches]
    return mx.concatenate(padded), mx.concatenate([lengths for _, lengths in micro_batches])


def reference(model, window: list, loss=None) -> tuple[dict, float]:
    """(gradient of the token mean over all rows in one batch, its float32 noise floor).

    The noise floor is the same gradient summed micro-batch by micro-batch (each token
    mean weighted by its tokens): equal in exact arithmetic, so their distance is rounding.
    """
    from mlx_lm.tuner.trainer import default_loss

    loss = loss or default_loss
    grad_fn = nn.value_and_grad(model, loss)
    (_, _), whole = grad_fn(model, *one_batch(window))
    whole = {n: g.astype(mx.float32) for n, g in tree_flatten(whole)}
    summed, total = None, 0
    for batch in window:
        (_, tokens), grads = grad_fn(model, *batch)
        weight = tokens.astype(mx.float32)
        grads = {n: g.astype(mx.float32) * weight for n, g in tree_flatten(grads)}
        summed = grads if summed is None else {n: summed[n] + grads[n] for n in grads}
        total = total + tokens
    summed = {n: g / total.astype(mx.float32) for n, g in summed.items()}
    return whole, relative_distance(summed, whole)


def relative_distance(observed: dict, expected: dict) -> float:
    """|observed - expected| / |expected| over all tensors together (L2)."""
    difference = sum(mx.sum((observed[n] - expected[n]) ** 2) for n in expected)
    norm = sum(mx.sum(expected[n] ** 2) for n in expected)
    return math.sqrt(difference.item()) / max(math.sqrt(norm.item()), 1e-30)


def measure(model, probe: AccumulationProbe) -> dict:
    k, batches = probe.steps, probe.micro_batches
    window, extra = batches[:k], batches[k : k + max(1, k // 2)]
    expected, noise = reference(model, window)
    recorder = GradientRecorder()
    probe.trainer(model, recorder, window, k)
    got = handed(recorder)
    deviation = relative_distance(got, expected)
    counter = GradientRecorder()
    probe.trainer(model, counter, window + extra, k)
    tokens = [int(((lengths[:, 1] - lengths[:, 0]).sum()).item()) for _, lengths in window]
    return {
        "trainer": probe.trainer_name,
        "k": k,
        "micro_batch_loss_tokens": tokens,
        "deviation": deviation,
        "noise_floor": noise,
        "window_updates": updates(recorder),
        "micro_batches_run": len(window) + len(extra),
        "updates_with_partial_window": updates(counter),
        "expected_updates_with_partial_window": math.ceil((len(window) + len(extra)) / k),
    }


# -- the trainers a probe can run -------------------------------------------------------------


def harness_trainer(model, optimizer, micro_batches, k) -> None:
    from lora_harness.lora import trainer

    trainer.train(model, optimizer, micro_batches, grad_accumulation_steps=k)


def mlx_lm_trainer(model, optimizer, micro_batches, k) -> None:
    """mlx-lm's own `train()`, unmodified, over exactly these micro-batches."""
    from mlx_lm.tuner.trainer import TrainingArgs, train

    def batches(**_):
        yield from micro_batches

    with tempfile.TemporaryDirectory() as folder, _quiet():
        args = TrainingArgs(
            batch_size=int(micro_batches[0][0].shape[0]),
            iters=len(micro_batches),
            steps_per_report=10**9,
            steps_per_eval=10**9,
            steps_per_save=10**9,
            adapter_file=Path(folder) / "adapters.safetensors",
            grad_accumulation_steps=k,
        )
        train(model, optimizer, None, None, args=args, iterate_batches=batches)


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
