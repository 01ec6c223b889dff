"""A fast BLAS for MLX's Linux CPU wheel, when the system has one.

Symptom: on Linux, `mlx[cpu]` multiplies float32 matrices at about 1 GFLOP/s (measured
here: 1.1 GFLOP/s at 1024^3, against numpy's 37), so a gate on a real 135M model takes
many minutes. The wheel bundles the reference (netlib) BLAS and calls `cblas_sgemm` from
it. Remedy: a system OpenBLAS (`apt-get install libopenblas0-pthread`) loaded with
RTLD_GLOBAL *before* `mlx.core` is imported takes those calls (40-60 GFLOP/s on the
same 2-core box). bf16/fp16 and quantised matmuls do not go through BLAS and stay slow.

`prefer_fast_blas()` runs once on `import lora_harness`. `LORA_HARNESS_BLAS=0` keeps
the bundled BLAS; `LORA_HARNESS_BLAS=/path/libopenblas.so.0` names the library. Apple
silicon (Accelerate) and the GPU backends are left alone. `describe()` is what the
report's `environment.cpu_blas` records.

Several processes on one machine (pytest-xdist's workers) each get their share of the
cores as OpenBLAS threads: an idle OpenBLAS thread spins on `sched_yield` for a while
after each call, on the core the other worker needs. Measured on a 2-core box, two LoRA
training processes at once: 3.1 s/step with OpenBLAS's default threads, 2.2 s/step with
one thread each. A user's own `OPENBLAS_NUM_THREADS` wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

ENV = "LORA_HARNESS_BLAS"
CANDIDATES = tuple(
    f"/usr/lib/{arch}-linux-gnu/{sub}libopenblas.so.0"
    for arch in ("x86_64", "aarch64")
    for sub in ("openblas-pthread/", "openblas-openmp/", "")
) + ("/usr/lib64/libopenblas.so.0", "/usr/lib/libopenblas.so.0")
HINT = "apt-get install libopenblas0-pthread: float32 matmul ~40x faster"

_status = "not set up (lora_harness.core.cpu_blas.prefer_fast_blas was not called)"
_library: str | None = None


def prefer_fast_blas() -> str:
    """Load a system OpenBLAS ahead of mlx's bundled BLAS where that helps; say what ran."""
    global _status
    _status = _choose()
    return _status


def library() -> str | None:
    """The OpenBLAS this process loaded ahead of mlx's bundled BLAS, if any."""
    return _library


def describe() -> str:
    """Which BLAS MLX's CPU float32 matmuls use in this process, and why."""
    preloaded = [p for p in os.environ.get("LD_PRELOAD", "").split() if "blas" in p.lower()]
    return f"LD_PRELOAD {preloaded[0]}" if preloaded else _status


def _choose() -> str:
    if not sys.platform.startswith("linux"):
        return "platform BLAS (not Linux)"
    wanted = os.environ.get(ENV, "").strip()
    if wanted.lower() in ("0", "off", "no", "reference"):
        return f"reference BLAS bundled with mlx ({ENV}={wanted})"
    if "mlx.core" in sys.modules:
        return "reference BLAS bundled with mlx (mlx was imported before lora_harness)"
    path = wanted or _system_openblas()
    if not path:
        return f"reference BLAS bundled with mlx (~1 GFLOP/s float32; {HINT})"
    shared = _share_cores_between_workers()
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        return f"reference BLAS bundled with mlx ({path} could not be loaded: {error})"
    global _library
    _library = path
    return f"openblas {path}{shared}"


def _share_cores_between_workers() -> str:
    # OpenBLAS reads its thread count once, when the library is loaded: set it before.
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 2 or "OPENBLAS_NUM_THREADS" in os.environ:
        return ""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // workers)
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    return f" ({threads} thread{'s' * (threads > 1)} each: {workers} pytest-xdist workers share the cores)"


def _system_openblas() -> str | None:
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return ctypes.util.find_library("openblas")
