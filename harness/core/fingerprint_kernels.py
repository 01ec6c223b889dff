"""One-pass GPU kernels for the fingerprint's two sums (see fingerprint.py for the digest).

MLX evaluates every elementwise step before a reduction into a temporary, so a weighted
sum in MLX ops reads and writes the weights several times. These kernels read each word
once: every thread keeps S1 = sum(w_i) and S2 = sum(w_i (2i + 1)) over a grid-stride loop
in 64-bit registers, and each thread block writes its two partial sums. Wrapping addition
is associative, so the result does not depend on the launch shape.

A kernel is trusted only after it reproduces the MLX-ops digest on random words of awkward
lengths; if it cannot be built or disagrees, the MLX-ops path is used and `BACKEND` says so.
LORA_HARNESS_FINGERPRINT=ops forces the MLX-ops path (to compare the two on one device).
"""

from __future__ import annotations

import os

import mlx.core as mx

THREADS = 256
WORDS_PER_THREAD = 16  # fewer blocks than words/256: each thread streams several words
MAX_BLOCKS = 4096

_CUDA_SOURCE = """
    const unsigned long long n = (unsigned long long)bits_shape[0];
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    unsigned long long s1 = 0, s2 = 0;
    const unsigned long long gid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long start = 0;
    if ((reinterpret_cast<unsigned long long>(bits) & 15) == 0) {
        const uint4* quads = reinterpret_cast<const uint4*>(bits);
        const unsigned long long nquads = n / 4;
        #pragma unroll 4
        for (unsigned long long q = gid; q < nquads; q += stride) {
            uint4 v = quads[q];
            unsigned long long k = 8 * q;
            s1 += (unsigned long long)v.x + v.y + (unsigned long long)v.z + v.w;
            s2 += (unsigned long long)v.x * (k + 1) + (unsigned long long)v.y * (k + 3)
                + (unsigned long long)v.z * (k + 5) + (unsigned long long)v.w * (k + 7);
        }
        start = 4 * nquads;
    }
    for (unsigned long long i = start + gid; i < n; i += stride) {
        unsigned long long w = bits[i];
        s1 += w;
        s2 += w * (2 * i + 1);
    }
    for (int offset = 16; offset > 0; offset /= 2) {
        s1 += __shfl_down_sync(0xffffffff, s1, offset);
        s2 += __shfl_down_sync(0xffffffff, s2, offset);
    }
    __shared__ unsigned long long p1[32], p2[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) { p1[warp] = s1; p2[warp] = s2; }
    __syncthreads();
    if (warp == 0) {
        s1 = lane < blockDim.x / 32 ? p1[lane] : 0;
        s2 = lane < blockDim.x / 32 ? p2[lane] : 0;
        for (int offset = 16; offset > 0; offset /= 2) {
            s1 += __shfl_down_sync(0xffffffff, s1, offset);
            s2 += __shfl_down_sync(0xffffffff, s2, offset);
        }
        if (lane == 0) { partial[2 * blockIdx.x] = s1; partial[2 * blockIdx.x + 1] = s2; }
    }
"""

_METAL_SOURCE = """
    const ulong n = (ulong)bits_shape[0];
    const ulong stride = (ulong)threads_per_grid.x;
    const uint tid = thread_position_in_threadgroup.x;
    ulong s1 = 0, s2 = 0;
    for (ulong i = thread_position_in_grid.x; i < n; i += stride) {
        ulong w = bits[i];
        s1 += w;
        s2 += w * (2 * i + 1);
    }
    threadgroup ulong p1[256];
    threadgroup ulong p2[256];
    p1[tid] = s1;
    p2[tid] = s2;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint offset = 128; offset > 0; offset >>= 1) {
        if (tid < offset) { p1[tid] += p1[tid + offset]; p2[tid] += p2[tid + offset]; }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) {
        const uint g = threadgroup_position_in_grid.x;
        partial[2 * g] = p1[0];
        partial[2 * g + 1] = p2[0];
    }
"""

BACKEND: str | None = None  # "cuda kernel", "metal kernel" or "mlx ops", once decided
_kernel = None


def _build():
    if mx.default_device() != mx.gpu:
        return None, "mlx ops"
    if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
        source, make, label = _CUDA_SOURCE, mx.fast.cuda_kernel, "cuda kernel"
    elif mx.metal.is_available():
        source, make, label = _METAL_SOURCE, mx.fast.metal_kernel, "metal kernel"
    else:
        return None, "mlx ops"
    kernel = make(
        name="lora_harness_digest", input_names=["bits"], output_names=["partial"], source=source
    )
    return kernel, label


def digest(bits: mx.array) -> mx.array:
    """Lazy uint64 [S1, S2] of a flat uint32 array, by the kernel (call available() first)."""
    blocks = max(1, min(MAX_BLOCKS, -(-bits.size // (THREADS * WORDS_PER_THREAD))))
    (partial,) = _kernel(
        inputs=[bits],
        grid=(blocks * THREADS, 1, 1),
        threadgroup=(THREADS, 1, 1),
        output_shapes=[(blocks, 2)],
        output_dtypes=[mx.uint64],
    )
    return mx.sum(partial, axis=0)


def available(reference) -> bool:
    """Whether the GPU kernel is built and agrees with `reference` (decided once)."""
    global BACKEND, _kernel
    if BACKEND is None:
        BACKEND = "mlx ops"
        if os.environ.get("LORA_HARNESS_FINGERPRINT") != "ops":
            try:
                _kernel, label = _build()
                if _kernel is not None:
                    agrees = _agrees(reference)
                    BACKEND = label if agrees else f"mlx ops ({label} disagreed with mlx ops)"
            except Exception as error:  # a kernel that cannot build leaves the ops path
                first_line = (str(error).splitlines() or [""])[0][:200]
                BACKEND = f"mlx ops (kernel unavailable: {error.__class__.__name__}: {first_line})"
    return BACKEND.endswith("kernel")


def _agrees(reference) -> bool:
    key = mx.random.key(12345)  # an explicit key: the run's own random stream is untouched
    for size in (1, 3, 4, 5, 257, 4099, 100_003, 1_000_003):
        drawn = mx.random.randint(-(2**31), 2**31 - 1, (size,), dtype=mx.int32, key=key)
        bits = mx.view(drawn, mx.uint32)
        for view in (bits, bits[1:]):  # an unaligned start takes the scalar path
            if view.size and digest(view).tolist() != reference(view).tolist():
                return False
    return True
