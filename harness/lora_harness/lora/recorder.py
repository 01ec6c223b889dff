"""An optimizer that records what a trainer hands it and moves nothing.

Handed to a trainer in place of its optimizer, it measures the trainer's own step from
outside: the gradient each update receives (summed over updates), how many updates ran,
and the learning rate the schedule gave at each of them. Its state lives in
`optimizer.state`, which compiled steps (mlx-lm's, the harness's) carry out of the graph.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as optim
from mlx.utils import tree_flatten


class GradientRecorder(optim.Optimizer):
    def __init__(self, learning_rate=0.0):
        super().__init__()
        self._maybe_schedule("learning_rate", learning_rate)

    def init_single(self, parameter: mx.array, state: dict):
        state["handed"] = mx.zeros(parameter.shape, mx.float32)

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        state["handed"] = state["handed"] + gradient.astype(mx.float32)
        return parameter


def handed(recorder: optim.Optimizer) -> dict[str, mx.array]:
    """Name -> the sum of the gradients the trainer handed the optimizer."""
    suffix = ".handed"
    return {n[: -len(suffix)]: a for n, a in tree_flatten(recorder.state) if n.endswith(suffix)}


def updates(recorder: optim.Optimizer) -> int:
    return int(recorder.state["step"].item())
