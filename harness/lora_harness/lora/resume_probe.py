"""Resume measured on a trainer: stop at step s, resume from its checkpoint, compare with the
uninterrupted run of 2s steps (adapters, optimizer moments, step, learning rate).

Everything runs on the run's own model: its adapters are put back to where they were when
the probe began, so the real run is unaffected. Each leg restarts from the same initial
adapters, as a fresh process converting with the same seed would.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from lora_harness.lora.accumulation import relative_distance


@dataclass
class ResumeProbe:
    """A trainer's train / checkpoint / resume, as the trainer itself does them."""

    trainer_name: str
    make_optimizer: Callable[[], object]
    train: Callable  # (model, optimizer, batches, folder) -> None; may save into folder
    save: Callable  # (model, optimizer, folder) -> None, after the first leg
    resume: Callable  # (model, folder) -> optimizer to continue with (model loaded in place)
    batches: list  # 2s batches


def measure(model, probe: ResumeProbe) -> dict:
    start = _adapters(model)
    try:
        straight = _leg(model, probe, start, probe.batches)
        again = _leg(model, probe, start, probe.batches)
        half = len(probe.batches) // 2
        with tempfile.TemporaryDirectory() as folder:
            first = probe.make_optimizer()
            _set(model, start)
            probe.train(model, first, probe.batches[:half], folder)
            probe.save(model, first, folder)
            _set(model, start)  # a fresh process: the adapters as conversion made them
            resumed = probe.resume(model, folder)
            probe.train(model, resumed, probe.batches[half:], folder)
            resumed_state = _state(model, resumed)
    finally:
        _set(model, start)
    return compare(straight, again, resumed_state, half)


def compare(straight: dict, again: dict, resumed: dict, stopped_at: int) -> dict:
    noise = relative_distance(again["adapters"], straight["adapters"])
    moments = straight["moments"]
    lost = []
    evidence = {
        "stopped_at": stopped_at,
        "adapter_distance": relative_distance(resumed["adapters"], straight["adapters"]),
        "noise_floor": noise,
        "moment_distance": (
            relative_distance(resumed["moments"], moments)
            if moments and set(resumed["moments"]) == set(moments)
            else (None if not moments else 1.0)
        ),
        "step": resumed["step"],
        "expected_step": straight["step"],
        "learning_rate": resumed["lr"],
        "expected_learning_rate": straight["lr"],
    }
    evidence["allowed"] = max(16 * noise, 1e-6)
    if evidence["adapter_distance"] > evidence["allowed"]:
        lost.append(f"adapters {evidence['adapter_distance']:.2%} away from the uninterrupted run")
    if (
        evidence["moment_distance"] is not None
        and evidence["moment_distance"] > evidence["allowed"]
    ):
        lost.append(
            f"optimizer moments {evidence['moment_distance']:.2%} away (reset or not saved)"
        )
    if resumed["step"] != straight["step"]:
        lost.append(f"optimizer step {resumed['step']}, not {straight['step']}")
    if abs(resumed["lr"] - straight["lr"]) > 1e-6 * max(abs(straight["lr"]), 1e-30):
        lost.append(
            f"learning rate {resumed['lr']:.6g}, not {straight['lr']:.6g} (schedule restarted)"
        )
    evidence["lost"] = lost
    return evidence


def _leg(model, probe, start, batches) -> dict:
    _set(model, start)
    optimizer = probe.make_optimizer()
    with tempfile.TemporaryDirectory() as folder:
        probe.train(model, optimizer, batches, folder)
    return _state(model, optimizer)


def _state(model, optimizer) -> dict:
    state = dict(tree_flatten(optimizer.state))
    moments = {n: a.astype(mx.float32) for n, a in state.items() if "." in n}
    return {
        "adapters": {n: a.astype(mx.float32) for n, a in _adapters(model).items()},
        "moments": moments,
        "step": int(state["step"].item()),
        "lr": float(state["learning_rate"].item()) if "learning_rate" in state else 0.0,
    }


def _adapters(model) -> dict:
    return {n: mx.array(a) for n, a in tree_flatten(model.trainable_parameters())}


def _set(model, adapters: dict) -> None:
    model.update(tree_unflatten(list(adapters.items())))
    mx.eval(model.parameters())


# -- the trainers' own ways ---------------------------------------------------------------------


def harness_probe(make_optimizer, batches) -> ResumeProbe:
    from lora_harness.lora import checkpoint, trainer

    def train(model, optimizer, part, folder):
        trainer.train(model, optimizer, part)

    def resume(model, folder):
        return checkpoint.resume_checkpoint(model, make_optimizer(), folder)

    return ResumeProbe(
        "harness", make_optimizer, train, checkpoint.save_checkpoint, resume, batches
    )


def mlx_lm_probe(make_optimizer, batches, grad_accumulation_steps=1) -> ResumeProbe:
    """mlx-lm's train() saves the adapter file; --resume-adapter-file loads it into the model
    (load_weights strict=False) and train_model builds a new optimizer from the config."""
    from mlx_lm.tuner.trainer import TrainingArgs, train

    def run(model, optimizer, part, folder):
        args = TrainingArgs(
            batch_size=int(part[0][0].shape[0]),
            iters=len(part),
            steps_per_report=10**9,
            steps_per_eval=10**9,
            steps_per_save=10**9,
            adapter_file=Path(folder) / "adapters.safetensors",
            grad_accumulation_steps=grad_accumulation_steps,
        )
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            train(model, optimizer, None, None, args=args, iterate_batches=lambda **_: iter(part))

    def save(model, optimizer, folder):  # train() already wrote adapters.safetensors
        pass

    def resume(model, folder):
        model.load_weights(str(Path(folder) / "adapters.safetensors"), strict=False)
        return make_optimizer()

    return ResumeProbe("mlx_lm", make_optimizer, run, save, resume, batches)
