"""`lora-harness bench`: the trainer measured side by side, as ratios from one run.

Every figure is a ratio or a distribution measured in this process on this machine; no
absolute time is asserted anywhere (machines are shared and noisy). Each ratio comes with
the seconds behind it and, over interleaved pairs, a median with an interval (spread.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import statistics
import tempfile
import time
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten

from lora_harness.bench import fingerprint_bench, spread, swap
from lora_harness.lora import trainer
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import split_adapter_and_base
from lora_harness.models.sources import ModelSource
from lora_harness.text import data


def fixed_batches(source: ModelSource, lora: LoRAConfig, count: int) -> list:
    """The same `count` batches for every trainer under test."""
    from mlx_lm.tuner.trainer import iterate_batches

    dataset = data.tokenized_dataset(data.load_rows(None), source.tokenizer())
    stream = iterate_batches(
        dataset, lora.batch_size, lora.max_seq_length, loop=True, seed=lora.seed
    )
    return [next(stream) for _ in range(count)]


def _prepared(source: ModelSource, lora: LoRAConfig):
    model, _ = source.load()
    trainer.prepare_lora_model(model, lora)
    return model


def _timed(function) -> tuple[float, object]:
    tic = time.perf_counter()
    value = function()
    return time.perf_counter() - tic, value


def compile_seconds(step_times: list[float]) -> float:
    """First step minus a typical later one: the time spent tracing and building kernels."""
    if len(step_times) < 2:
        return 0.0
    return max(step_times[0] - statistics.median(step_times[1:]), 0.0)


def harness_run(source: ModelSource, lora: LoRAConfig, batches: list) -> dict:
    """Whole-run wall time of the harness trainer over `batches` (model built outside)."""
    model = _prepared(source, lora)
    optimizer = trainer.make_optimizer(model, lora)
    wall, metrics = _timed(lambda: trainer.train(model, optimizer, batches))
    return {
        "wall_s": wall,
        "tokens": sum(m["loss_tokens"] for m in metrics),
        "compile_s": compile_seconds([m["step_time_s"] for m in metrics]),
    }


def mlx_lm_default_report_interval() -> int:
    from mlx_lm.tuner.trainer import TrainingArgs

    return TrainingArgs.__dataclass_fields__["steps_per_report"].default


def mlx_lm_run(source: ModelSource, lora: LoRAConfig, batches: list, steps_per_report: int):
    """Whole-run wall time of `mlx_lm.tuner.trainer.train` on the same batches."""
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = source.load()
    mx.random.seed(lora.seed)
    model.freeze()
    linear_to_lora_layers(model, lora.num_layers, lora.lora_parameters(), use_dora=lora.use_dora)
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArgs(
            batch_size=lora.batch_size,
            iters=len(batches),
            steps_per_report=steps_per_report,
            steps_per_eval=10**9,
            steps_per_save=10**9,
            max_seq_length=lora.max_seq_length,
            adapter_file=str(Path(folder) / "adapters.safetensors"),
        )
        optimizer = optim.Adam(learning_rate=lora.learning_rate)
        with contextlib.redirect_stdout(io.StringIO()):  # its progress lines, as a user sees
            wall, _ = _timed(
                lambda: train(
                    model, optimizer, batches, args=args, iterate_batches=lambda **_: iter(batches)
                )
            )
    return {"wall_s": wall}


def trainer_vs_mlx_lm(source: ModelSource, lora: LoRAConfig, steps: int, pairs: int) -> dict:
    """Harness tokens/s / mlx-lm tokens/s over the same batches, whole runs, interleaved."""
    batches = fixed_batches(source, lora, steps)
    default = mlx_lm_default_report_interval()
    harness_run(source, lora, batches), mlx_lm_run(source, lora, batches, default)  # warm-up
    samples = []
    for _ in range(pairs):  # interleaved, so drift on a shared machine hits every side
        ours = harness_run(source, lora, batches)
        theirs = mlx_lm_run(source, lora, batches, default)
        every = mlx_lm_run(source, lora, batches, 1)
        samples.append(
            {
                "harness_s": ours["wall_s"],
                "mlx_lm_s": theirs["wall_s"],
                "mlx_lm_report_every_step_s": every["wall_s"],
                "harness_compile_s": ours["compile_s"],
                "tokens": ours["tokens"],
            }
        )
    ratios = [s["mlx_lm_s"] / s["harness_s"] for s in samples]
    report_cost = [s["mlx_lm_report_every_step_s"] / s["mlx_lm_s"] for s in samples]
    seconds = {k: statistics.median(s[k] for s in samples) for k in samples[0] if k != "tokens"}
    tokens = samples[0]["tokens"]
    return {
        "ratio": statistics.median(ratios),
        "spread": spread.summarise(ratios),
        "seconds": seconds,
        "harness_tokens_per_second": tokens / seconds["harness_s"],
        "mlx_lm_tokens_per_second": tokens / seconds["mlx_lm_s"],
        "steps_per_report_1_cost": {
            "ratio": statistics.median(report_cost),
            "spread": spread.summarise(report_cost),
            "meaning": "mlx-lm wall time reporting every step / at its default interval",
        },
        "goal": ">= 1.00",
        "samples": samples,
        "settings": {
            "steps_per_run": steps,
            "pairs": pairs,
            "mlx_lm_steps_per_report": default,
            "timing": "whole-run wall time, model built outside, same batches",
            **lora.to_dict(),
        },
    }


def _checked_pair(source: ModelSource, lora: LoRAConfig) -> dict:
    """One plain run and one run with the in-training checks, on the same probe batch."""
    from lora_harness.runs.context import RunContext

    ctx = RunContext(source, lora)
    ctx.model.lora_model  # noqa: B018  (load + convert outside the timed region)
    batches = [ctx.model.probe_batch] * lora.iters
    plain = harness_run(source, lora, batches)  # its model is freed on return
    checked_s, outcome = _timed(lambda: ctx.training)
    return {
        "plain_s": plain["wall_s"],
        "with_checks_s": checked_s,
        "plain_compile_s": plain["compile_s"],
        "with_checks_compile_s": compile_seconds([m["step_time_s"] for m in outcome.metrics]),
    }


def check_overhead(source: ModelSource, lora: LoRAConfig, steps: int, pairs: int) -> dict:
    """Training with the in-training checks (fingerprints, gradient names) / without."""
    lora = dataclasses.replace(lora, iters=steps)
    _checked_pair(source, lora)  # warm-up: kernels built once per process, not per side
    gc.collect()
    samples = []
    for _ in range(pairs):
        samples.append(_checked_pair(source, lora))
        gc.collect()  # a run context holds itself in cycles: free its model before the next
    ratios = [s["with_checks_s"] / s["plain_s"] for s in samples]
    after_compile = [
        (s["with_checks_s"] - s["with_checks_compile_s"]) / (s["plain_s"] - s["plain_compile_s"])
        for s in samples
    ]
    return {
        "ratio": statistics.median(ratios),
        "spread": spread.summarise(ratios),
        "ratio_without_compile": statistics.median(after_compile),
        "seconds": {k: statistics.median(s[k] for s in samples) for k in samples[0]},
        "goal": "<= 1.02 amortised",
        "samples": samples,
        "settings": {"steps": steps, "pairs": pairs},
    }


def fingerprint(source: ModelSource, lora: LoRAConfig, reps: int) -> dict:
    """The frozen-base fingerprint of the LoRA model vs a plain read of the same tensors."""
    model = _prepared(source, lora)
    adapter, base = split_adapter_and_base(model)
    arrays = {**adapter, **base}
    mx.eval(arrays)
    return fingerprint_bench.measure(arrays, reps)


def _gradient_reading(gradient_keys: set[str], model) -> tuple[str, list[str]]:
    trainable = {name for name, _ in tree_flatten(model.trainable_parameters())}
    frozen = sorted(gradient_keys - trainable)
    if frozen:
        return (
            f"frozen weights get gradients: {len(frozen)} gradient leaves outside the trainable "
            "adapters (gradient_tree_matches_trainable would fail)",
            frozen[:5],
        )
    return (
        "gradients cover exactly the trainable adapters (the gradient_tree_matches_trainable "
        "test): the step is a forward, a backward through the frozen layers' activations "
        "and the adapter update",
        [],
    )


def lora_step_vs_forward(source: ModelSource, lora: LoRAConfig, reps: int) -> dict:
    """A compiled LoRA training step / a compiled forward+loss on the same batch."""
    from functools import partial

    from mlx_lm.tuner.trainer import default_loss

    batch = fixed_batches(source, lora, 1)[0]
    model = _prepared(source, lora)
    optimizer = trainer.make_optimizer(model, lora)
    gradient_keys: set[str] = set()
    step_fn = trainer.make_step(model, optimizer, gradient_keys=gradient_keys)
    forward = partial(mx.compile, inputs=[model.state], outputs=[model.state])(
        lambda tokens, lengths: default_loss(model, tokens, lengths)[0]
    )
    state = [model.state, optimizer.state, mx.random.state]
    mx.eval(step_fn(*batch), state), mx.eval(forward(*batch))  # compile both first
    step_s, forward_s = [], []
    for _ in range(reps):
        step_s.append(_timed(lambda: mx.eval(step_fn(*batch), state))[0])
        forward_s.append(_timed(lambda: mx.eval(forward(*batch)))[0])
    reading, frozen = _gradient_reading(gradient_keys, model)
    ratios = [s / f for s, f in zip(step_s, forward_s, strict=True)]
    step, fwd = statistics.median(step_s), statistics.median(forward_s)
    return {
        "ratio": statistics.median(ratios),
        "spread": spread.summarise(ratios, neutral=None),
        "seconds": {"step_s": step, "forward_s": fwd},
        "reading": reading,
        "frozen_with_gradients": frozen,
        "samples": {"step_s": step_s, "forward_s": forward_s},
        "settings": {"reps": reps},
    }


def _slope(values: list[float]) -> float:
    xs = range(len(values))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(values)
    denominator = sum((x - mean_x) ** 2 for x in xs) or 1.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / denominator


def memory(source: ModelSource, lora: LoRAConfig, steps: int) -> dict:
    """Peak/active/cache memory per step, growth slopes, and swap from the OS's counters."""
    model = _prepared(source, lora)
    optimizer = trainer.make_optimizer(model, lora)
    batches = fixed_batches(source, lora, steps)
    before = swap.counters()
    metrics = trainer.train(model, optimizer, batches)
    swapping = swap.activity(before, swap.counters())
    times = [m["step_time_s"] for m in metrics[1:]]
    keys = ("iteration", "step_time_s", "peak_memory_gb", "active_memory_gb", "cache_memory_gb")
    return {
        "active_growth_bytes_per_step": _slope([m["active_memory_gb"] * 1e9 for m in metrics[1:]]),
        "peak_growth_bytes_per_step": _slope([m["peak_memory_gb"] * 1e9 for m in metrics[1:]]),
        "cache_growth_bytes_per_step": _slope([m["cache_memory_gb"] * 1e9 for m in metrics[1:]]),
        "peak_memory_gb": max(m["peak_memory_gb"] for m in metrics),
        "step_time_cv": statistics.pstdev(times) / statistics.fmean(times),
        "compile_s": compile_seconds([m["step_time_s"] for m in metrics]),
        "swap": swapping,
        "swapped": swapping["swapped"],
        "goal": "growth ~ 0 bytes/step; no pages swapped",
        "samples": [{k: m[k] for k in keys} for m in metrics],
        "settings": {"steps": steps},
    }
