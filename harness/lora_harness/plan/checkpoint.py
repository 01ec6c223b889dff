"""Gradient checkpointing as mlx_lm.lora's --grad-checkpoint does it, undone afterwards.

mlx-lm patches the block's class (`type(layer).__call__`), so every model of that class in
the process is checkpointed from then on. A bench that measures with and without in one
process must put the class back, or the "without" runs are silently checkpointed too.
"""

from __future__ import annotations

import contextlib

import mlx.nn as nn


@contextlib.contextmanager
def grad_checkpoint(model: nn.Module, enabled: bool = True):
    """Checkpoint every block of `model` (mlx-lm's `grad_checkpoint`) inside the block."""
    if not enabled:
        yield
        return
    from mlx_lm.tuner.trainer import grad_checkpoint as mlx_lm_grad_checkpoint

    block = type(model.layers[0])
    original = block.__dict__.get("__call__")
    mlx_lm_grad_checkpoint(model.layers[0])
    try:
        yield
    finally:
        if original is None:
            del block.__call__
        else:
            block.__call__ = original
