"""`lora-harness bench`: the trainer measured side by side, as ratios from one run.

Every figure is a ratio or a distribution measured in this process on this machine; no
absolute time is asserted anywhere (machines are shared and noisy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
import mlx.optimizers as optim

from lora_harness.core import fingerprint
from lora_harness.lora import trainer
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import split_adapter_and_base
from lora_harness.models.sources import ModelSource
from lora_harness.text import data


def fixed_batches(source: ModelSource, lora: LoRAConfig, count: int) -> list:
    """The same `count` batches for every trainer under test."""
    from mlx_lm.tuner.trainer import iterate_batches

    _, tokenizer = source.load()
    dataset = data.tokenized_dataset(data.load_rows(None), tokenizer)
    stream = iterate_batches(
        dataset, lora.batch_size, lora.max_seq_length, loop=True, seed=lora.seed
    )
    return [next(stream) for _ in range(count)]


def harness_steps(source: ModelSource, lora: LoRAConfig, batches: list) -> list[dict]:
    """(seconds, loss tokens) per step of the harness trainer, step 1 holding compile."""
    model, _ = source.load()
    trainer.prepare_lora_model(model, lora)
    metrics = trainer.train(model, trainer.make_optimizer(model, lora), batches)
    return [{"seconds": m["step_time_s"], "tokens": m["loss_tokens"]} for m in metrics]


def mlx_lm_steps(source: ModelSource, lora: LoRAConfig, batches: list) -> list[dict]:
    """The same per-step figures from `mlx_lm.tuner.trainer.train` on the same batches."""
    from mlx_lm.tuner.callbacks import TrainingCallback
    from mlx_lm.tuner.trainer import TrainingArgs, train
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model, _ = source.load()
    mx.random.seed(lora.seed)
    model.freeze()
    linear_to_lora_layers(model, lora.num_layers, lora.lora_parameters(), use_dora=lora.use_dora)
    reports: list[dict] = []

    class Collect(TrainingCallback):
        def on_train_loss_report(self, info):
            reports.append(info)

    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArgs(
            batch_size=lora.batch_size,
            iters=len(batches),
            steps_per_report=1,
            steps_per_eval=10**9,
            steps_per_save=10**9,
            max_seq_length=lora.max_seq_length,
            adapter_file=str(Path(folder) / "adapters.safetensors"),
        )
        with contextlib.redirect_stdout(io.StringIO()):  # mlx-lm's progress UI
            train(
                model,
                optim.Adam(learning_rate=lora.learning_rate),
                batches,
                args=args,
                iterate_batches=lambda **_: iter(batches),
                training_callback=Collect(),
            )
    steps = []
    for info in reports:
        seconds = 1.0 / info["iterations_per_second"]
        steps.append({"seconds": seconds, "tokens": info["tokens_per_second"] * seconds})
    return steps


def throughput(steps: list[dict]) -> float:
    """Loss tokens per second after the first (compiling) step."""
    later = steps[1:]
    return sum(s["tokens"] for s in later) / sum(s["seconds"] for s in later)


def compile_seconds(steps: list[dict]) -> float:
    return steps[0]["seconds"] - statistics.median(s["seconds"] for s in steps[1:])


def trainer_vs_mlx_lm(source: ModelSource, lora: LoRAConfig, steps: int, pairs: int) -> dict:
    batches = fixed_batches(source, lora, steps)
    harness_steps(source, lora, batches), mlx_lm_steps(source, lora, batches)  # warm-up
    samples = []
    for _ in range(pairs):  # interleaved, so drift on a shared machine hits both sides
        ours, theirs = harness_steps(source, lora, batches), mlx_lm_steps(source, lora, batches)
        samples.append(
            {
                "harness_tokens_per_second": throughput(ours),
                "mlx_lm_tokens_per_second": throughput(theirs),
                "harness_compile_s": compile_seconds(ours),
                "mlx_lm_compile_s": compile_seconds(theirs),
            }
        )
    ratios = [s["harness_tokens_per_second"] / s["mlx_lm_tokens_per_second"] for s in samples]
    return {
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "goal": ">= 1.00",
        "samples": samples,
        "settings": {"steps_per_run": steps, "pairs": pairs, **lora.to_dict()},
    }


def _prepared(source: ModelSource, lora: LoRAConfig):
    model, _ = source.load()
    trainer.prepare_lora_model(model, lora)
    return model


def _timed(function) -> float:
    tic = time.perf_counter()
    function()
    return time.perf_counter() - tic


def check_overhead(source: ModelSource, lora: LoRAConfig, steps: int, pairs: int) -> dict:
    """Training with the in-training checks (fingerprints, gradient names) / without."""
    from lora_harness.runs.context import RunContext

    batches = fixed_batches(source, lora, 1) * steps
    plain, checked = [], []
    for _ in range(pairs):
        model = _prepared(source, lora)
        optimizer = trainer.make_optimizer(model, lora)
        plain.append(_timed(partial(trainer.train, model, optimizer, batches)))
        ctx = RunContext(source, dataclasses.replace(lora, iters=steps))
        ctx.model.lora_model  # noqa: B018  (load + convert outside the timed region, as above)
        checked.append(_timed(partial(getattr, ctx, "training")))
    return {
        "ratio": statistics.median(c / p for c, p in zip(checked, plain, strict=True)),
        "goal": "<= 1.02 amortised",
        "samples": {"plain_s": plain, "with_checks_s": checked},
        "fingerprint": fingerprint_cost(source, lora, batches[0]),
        "settings": {"steps": steps, "pairs": pairs},
    }


def fingerprint_cost(source: ModelSource, lora: LoRAConfig, batch) -> dict:
    model = _prepared(source, lora)
    adapter, base = split_adapter_and_base(model)
    arrays = {**adapter, **base}
    mx.eval(arrays)
    nbytes = sum(a.nbytes for a in arrays.values())
    mx.reset_peak_memory()
    active = mx.get_active_memory()
    seconds = statistics.median(_timed(lambda: fingerprint.fingerprint(arrays)) for _ in range(5))
    extra = max(mx.get_peak_memory() - active, 0)
    step = statistics.median(s["seconds"] for s in harness_steps(source, lora, [batch] * 6)[1:])
    return {
        "seconds": seconds,
        "fingerprint_over_step": seconds / step,
        "gb_per_second": nbytes / seconds / 1e9,
        "bytes_fingerprinted": nbytes,
        "tensors": len(arrays),
        "extra_peak_bytes": extra,
        "extra_bytes_per_tensor": extra / len(arrays),
        "extra_over_weights": extra / nbytes,
    }


def lora_step_vs_forward(source: ModelSource, lora: LoRAConfig, reps: int) -> dict:
    """A compiled LoRA training step / a compiled forward+loss on the same batch.

    About 1.5-2x is expected; about 3x means frozen weights are getting weight gradients.
    """
    from mlx_lm.tuner.trainer import default_loss

    batch = fixed_batches(source, lora, 1)[0]
    model = _prepared(source, lora)
    optimizer = trainer.make_optimizer(model, lora)
    step_fn = trainer.make_step(model, optimizer)
    forward = partial(mx.compile, inputs=[model.state], outputs=[model.state])(
        lambda tokens, lengths: default_loss(model, tokens, lengths)[0]
    )
    state = [model.state, optimizer.state, mx.random.state]
    mx.eval(step_fn(*batch), state), mx.eval(forward(*batch))  # compile both first
    step_s, forward_s = [], []
    for _ in range(reps):
        step_s.append(_timed(lambda: mx.eval(step_fn(*batch), state)))
        forward_s.append(_timed(lambda: mx.eval(forward(*batch))))
    return {
        "ratio": statistics.median(step_s) / statistics.median(forward_s),
        "expected": "about 1.5-2; about 3 means frozen weights get weight gradients",
        "samples": {"step_s": step_s, "forward_s": forward_s},
        "settings": {"reps": reps},
    }


def _slope(values: list[float]) -> float:
    xs = range(len(values))
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(values)
    denominator = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, values, strict=True)) / denominator


def memory(source: ModelSource, lora: LoRAConfig, steps: int) -> dict:
    """Peak/active/cache memory per step, growth slopes, step-time spread and jumps."""
    model = _prepared(source, lora)
    metrics = trainer.train(
        model, trainer.make_optimizer(model, lora), fixed_batches(source, lora, steps)
    )
    times = [m["step_time_s"] for m in metrics[1:]]
    median = statistics.median(times)
    jumps = [m["iteration"] for m in metrics[1:] if m["step_time_s"] > 3 * median]
    return {
        "active_growth_bytes_per_step": _slope([m["active_memory_gb"] * 1e9 for m in metrics[1:]]),
        "peak_growth_bytes_per_step": _slope([m["peak_memory_gb"] * 1e9 for m in metrics[1:]]),
        "cache_growth_bytes_per_step": _slope([m["cache_memory_gb"] * 1e9 for m in metrics[1:]]),
        "step_time_cv": statistics.pstdev(times) / statistics.fmean(times),
        "step_time_jumps": jumps,
        "swap_suspected": bool(jumps),
        "goal": "growth ~ 0 bytes/step; no step-time jumps",
        "samples": [
            {
                k: m[k]
                for k in (
                    "iteration",
                    "step_time_s",
                    "peak_memory_gb",
                    "active_memory_gb",
                    "cache_memory_gb",
                )
            }
            for m in metrics
        ],
        "settings": {"steps": steps},
    }
