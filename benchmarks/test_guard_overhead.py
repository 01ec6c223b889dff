"""The guard's overhead: whole mlx_lm.lora runs, guarded at the default interval / unguarded.

Run: python -m pytest benchmarks/test_guard_overhead.py --benchmark-only -n 0
The ratio (goal <= 1.02) and its interval are stored in extra_info; nothing is asserted.
"""

from __future__ import annotations

from lora_harness.bench.guard_bench import guard_overhead
from lora_harness.cli.guard_cmd import DEFAULT_CHECK_EVERY
from lora_harness.lora.lora_config import LoRAConfig, learning_rate_for
from lora_harness.models.sources import resolve


def test_guard_overhead_at_the_default_interval(benchmark):
    source = resolve("fixture:tiny")
    lora = LoRAConfig(learning_rate=learning_rate_for(source.config))
    result = benchmark.pedantic(
        guard_overhead,
        args=(source, lora, 3 * DEFAULT_CHECK_EVERY, 3, DEFAULT_CHECK_EVERY),
        rounds=1,
    )
    benchmark.extra_info["ratio"] = result["ratio"]
    benchmark.extra_info["interval"] = result["spread"]["interval"]
    benchmark.extra_info["checks_s"] = result["seconds"]["checks_s"]
