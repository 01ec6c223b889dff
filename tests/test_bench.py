"""`lora-harness bench` produces every measurement with ratios, samples and settings.

Only the shape of the output is asserted: timings on a shared machine are not.
"""

from __future__ import annotations

import jsonschema

from lora_harness.cli.bench_cmd import MEASUREMENTS
from lora_harness.reports import json_report


def test_bench_json_holds_all_six_measurements(cli):
    result = cli(
        "bench", "--pairs", "1", "--iters", "4", "--json", "-", "-q", "--out", "o", timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = result.json()
    jsonschema.validate(report, json_report.schema())
    bench = report["bench"]
    assert list(bench) == MEASUREMENTS
    for name in ("trainer_vs_mlx_lm", "check_overhead", "lora_step_vs_forward"):
        assert bench[name]["ratio"] > 0 and bench[name]["settings"]
    assert len(bench["trainer_vs_mlx_lm"]["samples"]) == 1
    assert bench["check_overhead"]["fingerprint"]["extra_over_weights"] < 1.0
    assert bench["structure_at_scale"]["exit_code"] == 0
    assert bench["gate_wall"]["cold"]["exit_code"] == bench["gate_wall"]["warm"]["exit_code"] == 0
    assert "step_time_cv" in bench["memory"] and "active_growth_bytes_per_step" in bench["memory"]


def test_bench_refuses_shape_models(cli):
    result = cli("bench", "--model", "shape:qwen2.5-7b")
    assert result.returncode == 2 and "shape-only" in result.stderr
