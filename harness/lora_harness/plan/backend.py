"""What this device's MLX does with attention and the loss, asked of MLX itself, not assumed.

Attention's backward either runs fused (the saved state is q, k, v, the output and one
float per row) or falls back to plain ops that keep the T x T probabilities of every head
(CPU always; CUDA when the sequence is not a multiple of its tile; Metal as the release
has it). Rather than encode each release's rule, `attention_keeps_scores` runs the
backward of one small attention at the planned sequence length and sees whether its peak
memory holds a T x T matrix. No model weights are involved.
"""

from __future__ import annotations

import functools

import mlx.core as mx

PROBE_HEAD_DIM = 8
PROBE_MAX_LENGTH = 4096  # past it, a probe of the same length modulo 128 answers the same


def probe_length(seq_length: int) -> int:
    if seq_length <= PROBE_MAX_LENGTH:
        return seq_length
    return PROBE_MAX_LENGTH + seq_length % 128


@functools.lru_cache(maxsize=32)
def attention_keeps_scores(seq_length: int, dtype_name: str) -> bool:
    """Whether the backward of causal attention at `seq_length` materialises T x T scores."""
    seq_length = probe_length(seq_length)
    dtype = getattr(mx, dtype_name)
    key = mx.random.key(0)
    q, k, v = (
        mx.random.normal((1, 1, seq_length, PROBE_HEAD_DIM), key=mx.random.split(key, 3)[i]).astype(
            dtype
        )
        for i in range(3)
    )
    mx.eval(q, k, v)

    def loss(q, k, v):
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.35, mask="causal")
        return out.astype(mx.float32).sum()

    grad = mx.grad(loss, argnums=(0, 1, 2))
    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    mx.eval(grad(q, k, v))
    extra = mx.get_peak_memory() - before
    scores = seq_length * seq_length * dtype.size
    return extra >= scores


def fused_cross_entropy() -> bool:
    """mlx.nn.losses.cross_entropy takes MLX's fused kernel (and its fused backward) on a GPU."""
    return mx.default_device() == mx.gpu and hasattr(mx.fast, "cross_entropy")


def name() -> str:
    if mx.default_device() != mx.gpu:
        return "cpu"
    if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
        return "cuda"
    return "metal"
