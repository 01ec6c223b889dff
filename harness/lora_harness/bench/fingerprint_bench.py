"""`bench --only fingerprint`: the frozen-base fingerprint against a plain read of the weights.

The reference is the cheapest thing that reads every byte once on this device,
`mx.eval([mx.sum(v) for v in weights])`; both are timed side by side, interleaved, on the
same tensors, so bandwidth_ratio says how close the fingerprint comes to memory speed.
"""

from __future__ import annotations

import statistics
import time

import mlx.core as mx

from lora_harness.core import fingerprint, fingerprint_kernels

GOAL_RATIO = 0.5  # at least half the bandwidth of a plain reduction
GOAL_EXTRA = 0.01  # at most 1% of the weight bytes of extra peak memory


def _seconds(function) -> float:
    tic = time.perf_counter()
    function()
    return time.perf_counter() - tic


def plain_read(arrays: dict[str, mx.array]) -> None:
    mx.eval([mx.sum(v) for v in arrays.values()])


def extra_peak_bytes(arrays: dict[str, mx.array]) -> int:
    """Peak memory a fingerprint adds above what is already allocated."""
    mx.clear_cache()
    mx.reset_peak_memory()
    active = mx.get_active_memory()
    fingerprint.fingerprint(arrays)
    return max(mx.get_peak_memory() - active, 0)


def measure(arrays: dict[str, mx.array], reps: int) -> dict:
    """Fingerprint vs plain read of `arrays` (already evaluated), `reps` interleaved pairs."""
    fingerprint.fingerprint(arrays), plain_read(arrays)  # kernels built, caches warm
    digest_s, read_s = [], []
    for _ in range(reps):
        digest_s.append(_seconds(lambda: fingerprint.fingerprint(arrays)))
        read_s.append(_seconds(lambda: plain_read(arrays)))
    nbytes = sum(a.nbytes for a in arrays.values())
    digest, read = statistics.median(digest_s), statistics.median(read_s)
    extra = extra_peak_bytes(arrays)
    ratio = read / digest
    return {
        "ratio": ratio,
        "bandwidth_ratio": ratio,
        "gb_per_second": nbytes / digest / 1e9,
        "read_gb_per_second": nbytes / read / 1e9,
        "extra_peak_bytes": extra,
        "extra_over_weights": extra / nbytes,
        "seconds": {"fingerprint_s": digest, "plain_read_s": read},
        "bytes_fingerprinted": nbytes,
        "tensors": len(arrays),
        "backend": fingerprint_kernels.BACKEND,
        "device": str(mx.default_device()),
        "goal": f"bandwidth_ratio >= {GOAL_RATIO}, extra_peak_bytes <= {GOAL_EXTRA:.0%} of weights",
        "meets_goal": ratio >= GOAL_RATIO and extra <= GOAL_EXTRA * nbytes,
        "samples": {"fingerprint_s": digest_s, "plain_read_s": read_s},
        "settings": {"reps": reps},
    }
