"""One-pass GPU kernels for the fingerprint's two sums (see fingerprint.py for the digest).

MLX evaluates every elementwise step before a reduction into a temporary, so a weighted
sum in MLX ops reads and writes the weights several times. These kernels read each word
once, and one launch digests GROUP tensors: a LoRA model has hundreds of small adapter
tensors, and a launch (plus a reduction) per tensor cost more than reading them.

Thread t of a tensor's grid streams words i_j = t + j * stride, j < m, and keeps, in 64-bit
registers, a = sum(w_j) and q = sum of the running a's. Since sum(j w_j) = m a - q,
S2 = sum(w_j (2 i_j + 1)) needs no 64-bit multiply per word. Block partial sums are
reduced by MLX. Wrapping addition is associative, so no launch shape changes the result.

A kernel is trusted only after it reproduces the MLX-ops digest on random words of awkward
lengths; if it cannot be built or disagrees, the MLX-ops path is used and `BACKEND` says so.
LORA_HARNESS_FINGERPRINT=ops forces the MLX-ops path (to compare the two on one device).
"""

from __future__ import annotations

import os

import mlx.core as mx

GROUP = 32  # tensors per launch: 23 launches for a 7B model with its r8 adapters
THREADS = 256
WORDS_PER_THREAD = 16  # fewer blocks than words/256: each thread streams several words
MAX_BLOCKS = 4096

_CUDA_PICK = "case {j}: bits = b{j}; n = b{j}_shape[0]; break;"
_CUDA_BODY = """
    const unsigned int* bits = b0;
    unsigned long long n = 0;
    switch (blockIdx.y) { CASES }
    const unsigned long long stride = (unsigned long long)gridDim.x * blockDim.x;
    const unsigned long long gid = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned long long s1 = 0, s2 = 0, start = 0;
    if ((reinterpret_cast<unsigned long long>(bits) & 15) == 0) {
        const uint4* quads = reinterpret_cast<const uint4*>(bits);
        const unsigned long long nquads = n / 4;
        unsigned long long a = 0, q = 0, y = 0, m = 0;
        #pragma unroll 4
        for (unsigned long long j = gid; j < nquads; j += stride) {
            uint4 v = quads[j];
            a += (unsigned long long)v.x + v.y + (unsigned long long)v.z + v.w;
            y += (unsigned long long)v.x + 3ull * v.y + 5ull * v.z + 7ull * v.w;
            q += a;
            m += 1;
        }
        s1 = a;  // quad j holds words 4j..4j+3, weighted 8j + (1, 3, 5, 7)
        s2 = y + 8ull * gid * a + 8ull * stride * (m * a - q);
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
        if (lane == 0) {
            const unsigned long long slot = (unsigned long long)blockIdx.y * gridDim.x + blockIdx.x;
            partial[2 * slot] = s1;
            partial[2 * slot + 1] = s2;
        }
    }
"""

_METAL_PICK = "case {j}: bits = b{j}; n = (ulong)b{j}_shape[0]; break;"
_METAL_BODY = """
    const device uint* bits = b0;
    ulong n = 0;
    switch (threadgroup_position_in_grid.y) { CASES }
    const ulong stride = (ulong)threads_per_grid.x;
    const ulong gid = (ulong)thread_position_in_grid.x;
    const uint tid = thread_position_in_threadgroup.x;
    ulong a = 0, q = 0, m = 0;
    for (ulong i = gid; i < n; i += stride) {
        a += bits[i];
        q += a;
        m += 1;
    }
    threadgroup ulong p1[256];
    threadgroup ulong p2[256];
    p1[tid] = a;
    p2[tid] = (2 * gid + 1) * a + 2 * stride * (m * a - q);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (uint offset = 128; offset > 0; offset >>= 1) {
        if (tid < offset) { p1[tid] += p1[tid + offset]; p2[tid] += p2[tid + offset]; }
        threadgroup_barrier(mem_flags::mem_threadgroup);
    }
    if (tid == 0) {
        const ulong slot = (ulong)threadgroup_position_in_grid.y * threadgroups_per_grid.x
            + threadgroup_position_in_grid.x;
        partial[2 * slot] = p1[0];
        partial[2 * slot + 1] = p2[0];
    }
"""

BACKEND: str | None = None  # "cuda kernel", "metal kernel" or "mlx ops", once decided
_kernel = None


def _source(body: str, pick: str) -> str:
    return body.replace("CASES", " ".join(pick.format(j=j) for j in range(GROUP)))


def _build():
    if mx.default_device() != mx.gpu:
        return None, "mlx ops"
    if getattr(mx, "cuda", None) is not None and mx.cuda.is_available():
        source, make, label = _source(_CUDA_BODY, _CUDA_PICK), mx.fast.cuda_kernel, "cuda kernel"
    elif mx.metal.is_available():
        source, make = _source(_METAL_BODY, _METAL_PICK), mx.fast.metal_kernel
        label = "metal kernel"
    else:
        return None, "mlx ops"
    kernel = make(
        name=f"lora_harness_digest_{GROUP}",
        input_names=[f"b{j}" for j in range(GROUP)],
        output_names=["partial"],
        source=source,
    )
    return kernel, label


def digest_group(words: list[mx.array]) -> mx.array:
    """Lazy uint64 (GROUP, 2) of [S1, S2] rows for up to GROUP flat uint32 arrays.

    Rows past len(words) belong to padding and are to be ignored. Call available() first.
    """
    pad = mx.zeros((1,), dtype=mx.uint32)
    inputs = list(words) + [pad] * (GROUP - len(words))
    blocks = max(_blocks(bits.size) for bits in words)
    (partial,) = _kernel(
        inputs=inputs,
        grid=(blocks * THREADS, GROUP, 1),
        threadgroup=(THREADS, 1, 1),
        output_shapes=[(GROUP, blocks, 2)],
        output_dtypes=[mx.uint64],
    )
    return mx.sum(partial, axis=1)


def _blocks(size: int) -> int:
    return max(1, min(MAX_BLOCKS, -(-size // (THREADS * WORDS_PER_THREAD))))


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
    """One launch over awkward lengths, aligned and not, must match `reference` row by row."""
    key = mx.random.key(12345)  # an explicit key: the run's own random stream is untouched
    views = []
    for size in (1, 3, 4, 5, 257, 4099, 100_003, 1_000_003):
        drawn = mx.random.randint(-(2**31), 2**31 - 1, (size,), dtype=mx.int32, key=key)
        bits = mx.view(drawn, mx.uint32)
        views += [bits, bits[1:]] if size > 1 else [bits]  # an unaligned start: scalar path
    rows = digest_group(views).tolist()[: len(views)]
    return rows == [reference(view).tolist() for view in views]
