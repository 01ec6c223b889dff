"""How much memory a training run may use on this machine, and the verdict against it.

On a Mac, MLX's GPU may use up to Metal's recommended working set (less than the memory
size: macOS keeps the rest); past it the run swaps or is killed. On CUDA the device's own
memory; on a CPU, the memory Linux reports (MemTotal, and MemAvailable beside it, since
other processes hold the difference).
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

TIGHT_FROM = 0.85  # above this share of the budget, a prediction error of 15% could OOM


def budget(memory_gb: float | None = None) -> dict:
    """{bytes, source, ...}: --memory-gb when given, else what this machine reports."""
    if memory_gb is not None:
        return {"bytes": int(memory_gb * 1e9), "source": "--memory-gb"}
    info = _device_info()
    if mx.default_device() == mx.gpu:
        for key, label in (
            ("max_recommended_working_set_size", "Metal recommended working set"),
            ("total_memory", "GPU memory"),
            ("memory_size", "GPU memory"),
        ):
            if isinstance(info.get(key), int) and info[key] > 0:
                return {"bytes": info[key], "source": label, "device_info": info}
    meminfo = _meminfo()
    if "MemTotal" in meminfo:
        return {
            "bytes": meminfo["MemTotal"],
            "source": "/proc/meminfo MemTotal",
            "available_bytes": meminfo.get("MemAvailable"),
        }
    if isinstance(info.get("memory_size"), int):
        return {"bytes": info["memory_size"], "source": "memory size", "device_info": info}
    return {"bytes": None, "source": "unknown: pass --memory-gb"}


def verdict(peak_bytes: int, budget_bytes: int | None) -> str:
    if not budget_bytes:
        return "unknown"
    if peak_bytes <= TIGHT_FROM * budget_bytes:
        return "fits"
    if peak_bytes <= budget_bytes:
        return "tight"
    return "does not fit"


def _device_info() -> dict:
    try:
        if hasattr(mx, "device_info"):
            return dict(mx.device_info())
        return dict(mx.metal.device_info())
    except (RuntimeError, AttributeError):
        return {}


def _meminfo() -> dict:
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values
