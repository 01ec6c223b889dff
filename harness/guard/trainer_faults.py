"""Held-out trainer faults, each taken from a public tracker and coded through the guard's
seams (a probe's trainer, a resume path, an optimizer handed in). The tests run each one and
show the check it is listed with failing on it; the clean trainers pass the same checks.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from lora_harness.lora import trainer


def mean_of_means_trainer(model, optimizer, micro_batches, k) -> None:
    """Averages per-micro-batch token means (transformers #34191 before 4.46, torchtune #1875
    before its fix, mlx-lm PR #1413): short micro-batches weigh as much as long ones."""
    from mlx_lm.tuner.trainer import default_loss

    grad_fn = nn.value_and_grad(model, default_loss)
    window = []
    for tokens, lengths in micro_batches:
        _, grads = grad_fn(model, tokens, lengths)
        window.append(grads)
        if len(window) == k:
            total = tree_map(lambda *g: sum(g) / k, *window)
            optimizer.update(model, total)
            mx.eval(model.state, optimizer.state)
            window = []
    if window:
        total = tree_map(lambda *g: sum(g) / len(window), *window)
        optimizer.update(model, total)
        mx.eval(model.state, optimizer.state)


def drop_partial_window_trainer(model, optimizer, micro_batches, k) -> None:
    """Token-weighted, but the last window shorter than k is never applied (mlx-lm #1544:
    iters not a multiple of grad_accumulation_steps)."""
    step = trainer.make_accumulating_step(model, optimizer, k)
    for tokens, lengths in micro_batches:
        step(tokens, lengths)
        mx.eval(model.state, optimizer.state)
