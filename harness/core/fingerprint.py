"""On-device fingerprints of tensors: prove weights unchanged without copying them.

A deep copy of a 7B bf16 model costs 15 GB. Instead each tensor's raw bits are read as
unsigned integers and reduced on the device to two wrapping 32-bit sums (of the bits and
of their squares): one read of the weights and 8 bytes per tensor. Any single changed
element changes the first sum; the second catches changes that cancel in the first.
Work is evaluated in pieces of at most CHUNK elements, so the temporaries stay a few
tens of MB however large the model (a 7B embedding alone is over 1 GB).
"""

from __future__ import annotations

import mlx.core as mx

_UINT_OF_WIDTH = {1: mx.uint8, 2: mx.uint16, 4: mx.uint32, 8: mx.uint64}
CHUNK = 1 << 21  # elements evaluated at once: bounds the temporaries to ~16 MB
_WRAP = 1 << 32


def tensor_digest(array: mx.array) -> mx.array:
    """A lazy uint32 pair summarising the exact bits of `array`."""
    bits = mx.view(array.reshape(-1), _UINT_OF_WIDTH[array.itemsize])
    if bits.dtype == mx.uint64:
        bits = (bits ^ (bits >> 32)).astype(mx.uint32)
    else:
        bits = bits.astype(mx.uint32)
    return mx.stack([mx.sum(bits), mx.sum(bits * bits)])


def _pieces(array: mx.array):
    flat = array.reshape(-1)
    for start in range(0, max(flat.size, 1), CHUNK):
        yield flat[start : start + CHUNK]


def fingerprint(arrays: dict[str, mx.array]) -> dict[str, tuple[int, int]]:
    """Name -> digest for every tensor; small tensors share an evaluation, large ones are split."""
    sums = {name: (0, 0) for name in arrays}
    pending: list[tuple[str, mx.array]] = []
    pending_size = 0

    def flush():
        mx.eval([digest for _, digest in pending])
        for name, digest in pending:
            first, second = digest.tolist()
            old_first, old_second = sums[name]
            sums[name] = ((old_first + first) % _WRAP, (old_second + second) % _WRAP)
        pending.clear()

    for name in sorted(arrays):
        for piece in _pieces(arrays[name]):
            pending.append((name, tensor_digest(piece)))
            pending_size += piece.size
            if pending_size >= CHUNK:
                flush()
                pending_size = 0
    if pending:
        flush()
    return sums


def changed(before: dict, after: dict) -> list[str]:
    """Names whose digest differs, plus names present on one side only."""
    names = set(before) | set(after)
    return sorted(n for n in names if before.get(n) != after.get(n))
