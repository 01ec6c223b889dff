"""Provenance of a run: where and with what it ran."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    if platform.system() == "Darwin":
        return _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _run(command: list[str]) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def git_sha(folder: str | None = None) -> str | None:
    return _run(["git", "-C", folder or os.getcwd(), "rev-parse", "HEAD"])


def collect() -> dict:
    import mlx.core as mx

    from lora_harness.core import cpu_blas
    from lora_harness.reports import history

    info = {
        "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "device": str(mx.default_device()),
        "cpu_blas": cpu_blas.describe(),
        "python": platform.python_version(),
        "mlx": _version("mlx"),
        "mlx_lm": _version("mlx-lm"),
        "harness": _version("mlx-lora-harness"),
        "git_sha": git_sha(),
        "machine_id": history.machine_id(),
    }
    info["hardware_fingerprint"] = history.hardware_fingerprint(info)
    return info
