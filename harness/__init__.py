"""mlx-lora-harness: health checks for LoRA fine-tuning with MLX (import name `lora_harness`).

Folders, lowest first; imports only ever point down this list:
    core/    the checks' framework and shared primitives (errors, Check, fingerprints)
    text/    training data, the built-in corpus, generation and voice scoring
    models/  model sources: fixture, shape-only and random models, local and hub folders
    lora/    the LoRA recipe, trainers (SFT, DPO), faults, expectations, adapter files
    checks   (top-level folder checks/) one health check per module
    runs/    settings, the run context, suites, self-test, doctor, report assembly
    reports  (top-level folder reports/) report JSON, schema, HTML/JUnit renderers, compare
    bench/   measurements, each a ratio from one run
    remote/  the SSH runner
    cli/     argument parsing and exit codes only
"""

from lora_harness.core.version import __version__  # noqa: F401


def __getattr__(name: str):
    # `lora_harness.watch` without importing mlx on `import lora_harness`.
    if name in ("watch", "Watch", "UnhealthyLoRA"):
        from lora_harness.runs import watch as _watch

        return getattr(_watch, name)
    raise AttributeError(f"module 'lora_harness' has no attribute {name!r}")
