"""`lora-harness bench` produces every measurement with ratios, samples and settings.

Only the shape of the output is asserted: timings on a shared machine are not.
"""

from __future__ import annotations

import json

import jsonschema

from lora_harness.cli.bench_cmd import MEASUREMENTS
from lora_harness.reports import json_report
from tests.test_random_model import TINY


def test_bench_json_holds_every_measurement_with_its_seconds(cli):
    result = cli(
        "bench", "--pairs", "1", "--iters", "4", "--json", "-", "-q", "--out", "o", timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = result.json()
    jsonschema.validate(report, json_report.schema())
    bench = report["bench"]
    assert list(bench) == MEASUREMENTS
    for name in ("trainer_vs_mlx_lm", "check_overhead", "lora_step_vs_forward", "fingerprint"):
        assert bench[name]["ratio"] > 0 and bench[name]["settings"]
        seconds = bench[name]["seconds"]
        # compile = first step minus a typical one: 0 when it is lost in a loaded machine's noise
        assert all(value > 0 for key, value in seconds.items() if "compile" not in key), seconds
        assert all(value >= 0 for value in seconds.values()), seconds
    mlx_lm = bench["trainer_vs_mlx_lm"]
    assert len(mlx_lm["samples"]) == 1 and mlx_lm["spread"]["verdict"].startswith("one pair")
    assert mlx_lm["steps_per_report_1_cost"]["ratio"] > 0
    assert mlx_lm["settings"]["mlx_lm_steps_per_report"] > 1  # mlx-lm's own default
    assert "with_checks_compile_s" in bench["check_overhead"]["seconds"]
    fingerprint = bench["fingerprint"]
    assert {"gb_per_second", "read_gb_per_second", "bandwidth_ratio", "extra_peak_bytes"} <= set(
        fingerprint
    )
    assert "frozen weights get gradients" not in bench["lora_step_vs_forward"]["reading"]
    assert bench["structure_at_scale"]["exit_code"] == 0
    assert bench["gate_wall"]["cold"]["exit_code"] == bench["gate_wall"]["warm"]["exit_code"] == 0
    assert bench["memory"]["swap"]["swapped"] in (True, False, None)
    assert "active_growth_bytes_per_step" in bench["memory"]


def test_bench_fingerprint_runs_on_a_random_model(cli, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY))
    result = cli(
        "bench",
        "--model",
        f"random:{config}",
        "--only",
        "fingerprint",
        "--pairs",
        "1",
        "--json",
        "-",
        "-q",
        "--out",
        "o",
    )
    assert result.returncode == 0, result.stderr
    fingerprint = result.json()["bench"]["fingerprint"]
    assert fingerprint["bytes_fingerprinted"] > 0 and fingerprint["extra_peak_bytes"] >= 0


def test_bench_refuses_shape_models(cli):
    result = cli("bench", "--model", "shape:qwen2.5-7b")
    assert result.returncode == 2 and "shape-only" in result.stderr
