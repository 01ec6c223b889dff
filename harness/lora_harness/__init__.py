"""mlx-lora-harness: health checks for LoRA fine-tuning with MLX (import name `lora_harness`).

The folders are layers; LAYERS lists them lowest first, and imports only ever point down
it (tests/test_packaging.py enforces it; docs/architecture.md says what each layer does).
checks and reports are the top-level folders checks/ and reports/.
"""

from lora_harness.core import cpu_blas
from lora_harness.core.version import __version__  # noqa: F401

# Before anything imports mlx.core: MLX's Linux CPU wheel bundles the reference BLAS (~1
# GFLOP/s); a system OpenBLAS loaded first takes its float32 matmuls (core/cpu_blas.py).
cpu_blas.prefer_fast_blas()

LAYERS = (
    "core",
    "reports",
    "text",
    "models",
    "lora",
    "checks",
    "runs",
    "plan",
    "bench",
    "remote",
    "cli",
)


def __getattr__(name: str):
    # `lora_harness.watch` without importing mlx on `import lora_harness`.
    if name in ("watch", "Watch", "UnhealthyLoRA"):
        from lora_harness.runs import watch as _watch

        return getattr(_watch, name)
    raise AttributeError(f"module 'lora_harness' has no attribute {name!r}")
