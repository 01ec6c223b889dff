"""On-device fingerprints of tensors: prove weights unchanged without copying them.

A deep copy of a 7B bf16 model costs 15 GB. Instead each tensor's raw bits are read as
unsigned words w_i (32-bit where the byte count allows, else the element's own width) and
reduced on the device to two wrapping 64-bit sums:

    S1 = sum(w_i)              any single changed bit changes it (by +-2^k, k < 32)
    S2 = sum(w_i * (2i + 1))   a swap of two different words a, b at i, j changes it by
                               2(a - b)(j - i), never 0 mod 2^64 below 2^32 words (16 GB)

Both are exact integer sums, so the digest is the same on every backend and every run.
On a GPU a custom kernel reads the weights once, at memory speed, with no temporaries,
GROUP tensors per launch (`fingerprint_kernels.py`); elsewhere, or if the kernel cannot
be built, the same sums are taken in MLX reductions. Tensors are batched into one evaluation per BATCH_BYTES, so a
7B model costs one host sync rather than one per piece.
"""

from __future__ import annotations

import mlx.core as mx

from lora_harness.core import fingerprint_kernels

_UINT_OF_WIDTH = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32, 8: mx.uint64}
ROW = 4096  # words per row on the MLX-ops path
MAX_ROWS = 1 << 16  # 16-bit lanes summed over <= 2^16 rows or columns cannot overflow 32 bits
BATCH_BYTES = 1 << 36  # tensor bytes per evaluation: a 7B model is one host sync
_INVERSE_65535 = pow(65535, -1, 1 << 32)


def words(array: mx.array) -> mx.array:
    """The tensor's bits as a flat array of unsigned words, without a copy."""
    flat = array.reshape(-1)
    width = 4 if array.nbytes % 4 == 0 and array.itemsize <= 4 else array.itemsize
    return mx.view(flat, _UINT_OF_WIDTH[width])


def reference_digest(bits: mx.array) -> mx.array:
    """Lazy uint64 [S1, S2] of flat words in plain MLX reductions, without temporaries.

    Words are laid out as rows of ROW; with i = r ROW + k,
    S2 = 2 ROW sum_r r rowsum_r + sum_k (2k + 1) colsum_k, so two plain reductions (row
    and column sums, taken exactly over 16-bit lanes) give the same sums as the kernel.
    """
    total = mx.zeros((2,), dtype=mx.uint64)
    row = min(ROW, max(bits.size, 1))
    whole = bits.size // row * row
    for start in range(0, whole, row * MAX_ROWS):
        stop = min(start + row * MAX_ROWS, whole)
        total = total + _block_digest(bits[start:stop].reshape(-1, row), start)
    if whole < bits.size:
        total = total + _block_digest(bits[whole:].reshape(1, -1), whole)
    return total


def _block_digest(block: mx.array, start: int) -> mx.array:
    rows, row = block.shape
    lanes = block if block.itemsize == 1 else mx.view(block, mx.uint16)
    col_sums = _join_lanes(mx.sum(lanes, axis=0).reshape(row, -1))
    row_sums = _row_sums(block, lanes)
    s1 = mx.sum(row_sums)
    by_row = mx.sum(row_sums * mx.arange(rows, dtype=mx.uint64))
    by_col = mx.sum(col_sums * (2 * mx.arange(row, dtype=mx.uint64) + 1))
    s2 = _u64(2 * row) * by_row + by_col + _u64(2 * start) * s1
    return mx.stack([s1, s2])


def _row_sums(block: mx.array, lanes: mx.array) -> mx.array:
    """Exact uint64 sum of each row of words, from contiguous reductions only."""
    if block.itemsize <= 2:
        return mx.sum(block, axis=1).astype(mx.uint64)  # < 2^32: ROW * 65535 cannot wrap
    if block.itemsize == 8:
        return _join_lanes(mx.sum(lanes.reshape(*block.shape, -1), axis=1))
    # 32-bit words: both lanes at once (lo + hi, exact) and the wrapped word sum
    # (lo + 2^16 hi mod 2^32) give hi, since 2^16 - 1 is odd and so invertible mod 2^32.
    both = mx.sum(lanes, axis=1)
    wrapped = mx.sum(block, axis=1)
    high = (wrapped - both) * mx.array(_INVERSE_65535, dtype=mx.uint32)
    low = both - high
    return low.astype(mx.uint64) + (high.astype(mx.uint64) << _u64(16))


def _join_lanes(lane_sums: mx.array) -> mx.array:
    """Exact per-lane sums (n, lanes) -> uint64 word sums, lane j weighted 2^(16 j)."""
    wide = lane_sums.astype(mx.uint64)
    shifts = 16 * mx.arange(wide.shape[-1], dtype=mx.uint64)
    return mx.sum(wide << shifts, axis=-1)


def _u64(value: int) -> mx.array:
    return mx.array(value, dtype=mx.uint64)


def tensor_digest(array: mx.array) -> mx.array:
    """A lazy uint64 pair [S1, S2] summarising the exact bits of `array`."""
    rows, owners = _digest_rows([words(array)])
    return rows[owners.index(0)]


def fingerprint(arrays: dict[str, mx.array]) -> dict[str, tuple[int, int]]:
    """Name -> (S1, S2) for every tensor, one evaluation per BATCH_BYTES of tensors."""
    sums: dict[str, tuple[int, int]] = {}
    names, pending_bytes = [], 0
    for name in sorted(arrays):
        names.append(name)
        pending_bytes += arrays[name].nbytes
        if pending_bytes >= BATCH_BYTES:
            sums.update(_collect(names, arrays))
            names, pending_bytes = [], 0
    if names:
        sums.update(_collect(names, arrays))
    return sums


def _collect(names: list[str], arrays: dict[str, mx.array]) -> dict[str, tuple[int, int]]:
    by_size = sorted(names, key=lambda name: arrays[name].size)  # even work in a kernel group
    rows, owners = _digest_rows([words(arrays[name]) for name in by_size])
    values = rows.tolist()  # one evaluation, one transfer
    return {by_size[i]: tuple(row) for i, row in zip(owners, values, strict=True) if i is not None}


def _digest_rows(flat_words: list[mx.array]) -> tuple[mx.array, list[int | None]]:
    """Lazy uint64 (rows, 2) of [S1, S2], and which input each row is (None: padding).

    Per-tensor ops cost more than reading a small tensor, so kernel-ready tensors are
    digested GROUP to a launch and all rows leave in one array.
    """
    ready = [i for i, bits in enumerate(flat_words) if _kernel_ready(bits)]
    pieces, owners = [], []
    group = fingerprint_kernels.GROUP
    for first in range(0, len(ready), group):
        members = ready[first : first + group]
        pieces.append(fingerprint_kernels.digest_group([flat_words[i] for i in members]))
        owners += members + [None] * (group - len(members))
    for i in sorted(set(range(len(flat_words))) - set(ready)):
        pieces.append(reference_digest(flat_words[i])[None])
        owners.append(i)
    return mx.concatenate(pieces), owners


def _kernel_ready(bits: mx.array) -> bool:
    return (
        bits.dtype == mx.uint32
        and bits.size > 0
        and fingerprint_kernels.available(reference_digest)
    )


def changed(before: dict, after: dict) -> list[str]:
    """Names whose digest differs, plus names present on one side only."""
    names = set(before) | set(after)
    return sorted(n for n in names if before.get(n) != after.get(n))
