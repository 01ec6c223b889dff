"""The plan's predicted peak memory / the measured peak of real steps, as a benchmark.

Run: python -m pytest benchmarks/test_plan_accuracy.py --benchmark-only -n 0 -s
Each row's ratio goes into extra_info; the goal, every ratio in [0.85, 1.15], is reported
by `lora-harness bench --only plan_accuracy`, not asserted (memory differs by backend).
"""

from __future__ import annotations

import pytest

from lora_harness.bench import plan_bench
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import resolve


@pytest.mark.parametrize(
    "spec, shapes",
    [
        ("fixture:tiny", plan_bench.CPU_GRID),
        ("random:qwen2.5-0.5b", plan_bench.CPU_GRID[:2]),
    ],
)
def test_plan_accuracy(benchmark, spec, shapes):
    result = benchmark.pedantic(
        plan_bench.measure, args=(resolve(spec), LoRAConfig(), shapes), rounds=1
    )
    for row in result["rows"]:
        label = f"B{row['batch_size']}_T{row['seq_length']}" + (
            "_ckpt" if row["grad_checkpoint"] else ""
        )
        benchmark.extra_info[label] = row.get("ratio")
    benchmark.extra_info["within_goal"] = f"{result['within_goal']}/{result['measured']}"
