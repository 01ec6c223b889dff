"""Benchmarks of whole `lora-harness run` processes: wall time and peak RSS per child."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def run_child(arguments: list[str], env: dict | None = None) -> dict:
    """Run `python -m harness ARGS`; wall seconds, exit code and this child's own peak RSS."""
    tic = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_harness", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    # wait4 gives the rusage of this child alone (RUSAGE_CHILDREN would mix in earlier ones).
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    peak_kib = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return {
        "wall_s": time.perf_counter() - tic,
        "exit_code": process.returncode,
        "peak_rss_mb": peak_kib / 1024,
    }


def structure_at_scale(shape: str = "shape:qwen2.5-7b") -> dict:
    """The structure suite on a real-size config: seconds and RSS, weights never materialised."""
    with tempfile.TemporaryDirectory() as out:
        result = run_child(["run", "--model", shape, "--suite", "structure", "-q", "--out", out])
    return {**result, "goal": "seconds, peak RSS well under 1 GB", "settings": {"model": shape}}


def gate_wall(model: str) -> dict:
    """The gate suite end to end, with a cold fixture cache (builds it) and then warm."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {"LORA_HARNESS_CACHE": cache}
        command = ["run", "--model", model, "-q", "--out", out]
        cold = run_child(command, env) if model.startswith("fixture:") else None
        warm = run_child(command, env)
    return {
        "cold": cold,
        "warm": warm,
        "ratio": cold["wall_s"] / warm["wall_s"] if cold else None,
        "settings": {"model": model},
    }
