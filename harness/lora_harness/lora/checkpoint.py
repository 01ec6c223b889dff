"""A resumable checkpoint for the harness's trainer: adapters AND optimizer state (with its
step, hence the schedule's position), so a resumed run continues like the uninterrupted one.

mlx-lm's `--resume-adapter-file` restores the adapters only; the optimizer restarts with
zero moments at step 0 (the schedule's warmup again). See checks/resume_continues_run.py.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

ADAPTERS = "adapters.safetensors"
OPTIMIZER = "optimizer.safetensors"


def save_checkpoint(model, optimizer, folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(folder / ADAPTERS), dict(tree_flatten(model.trainable_parameters())))
    state = {name: mx.array(value) for name, value in tree_flatten(optimizer.state)}
    mx.save_safetensors(str(folder / OPTIMIZER), state)
    return folder


def resume_checkpoint(model, optimizer, folder: Path):
    """Load the adapters into `model` and the state (moments, step, lr) into `optimizer`."""
    folder = Path(folder)
    model.load_weights(str(folder / ADAPTERS), strict=False)
    state = mx.load(str(folder / OPTIMIZER))
    optimizer.state = tree_unflatten(list(state.items()))
    return optimizer
