"""`random:<shape>`: a real architecture with random weights, built in memory from a seed.

For validating hardware and the harness at full scale without a download: the model has
the published shape and dtype, so memory, step time and every structural and training
check behave as on the real model; only what it would generate is meaningless. Weights
are drawn lazily in the target dtype, so a 7B bf16 model never exists in float32.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
INIT_STD = 0.02  # the usual initializer range of these architectures (HF initializer_range)


def dtype_name(config: dict, override: str | None = None) -> str:
    """The dtype asked for (`@dtype`), else the config's torch_dtype, else bfloat16."""
    name = override or config.get("torch_dtype") or config.get("dtype") or "bfloat16"
    return str(name).removeprefix("torch.")


def randomize(model, dtype, seed: int) -> None:
    """Replace every parameter in place: N(0, std) matrices, unit norms, zero biases."""
    mx.random.seed(seed)
    std = INIT_STD
    fresh = []
    for name, value in sorted(tree_flatten(model.parameters())):
        if not mx.issubdtype(value.dtype, mx.floating):
            fresh.append((name, value))  # integer buffers (none in float models) stay
        elif name.endswith("bias"):
            fresh.append((name, mx.zeros(value.shape, dtype=dtype)))
        elif value.ndim == 1:  # norm scales
            fresh.append((name, mx.ones(value.shape, dtype=dtype)))
        else:
            fresh.append((name, (mx.random.normal(value.shape) * std).astype(dtype)))
        mx.eval(fresh[-1][1])  # one tensor's float32 draw alive at a time
    model.update(tree_unflatten(fresh))
