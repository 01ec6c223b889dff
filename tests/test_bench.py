"""`lora-harness bench` produces every measurement with ratios, samples and settings.

Only the shape of the output is asserted: timings on a shared machine are not.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from lora_harness.cli.bench_cmd import MEASUREMENTS
from lora_harness.reports import json_report
from tests.support.helpers import TINY


@pytest.mark.slow  # the whole bench
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
    assert "active_growth_bytes_per_step" in bench["memory"]


def _kernel_swap_pages() -> int:
    values = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
    return int(values["pswpin"]) + int(values["pswpout"])


@pytest.mark.slow  # a bench measurement: 32 training steps
@pytest.mark.skipif(not Path("/proc/vmstat").exists(), reason="Linux swap counters")
def test_bench_memory_reads_swap_from_the_kernels_counters(cli):
    """Swap is the kernel's page counts over the measurement, never guessed from slow steps:
    what the bench reports lies within what /proc/vmstat counted around the whole command."""
    before = _kernel_swap_pages()
    result = cli("bench", "--only", "memory", "--iters", "4", "--json", "-", "-q", "--out", "o")
    around = _kernel_swap_pages() - before
    assert result.returncode == 0, result.stderr
    memory = result.json()["bench"]["memory"]
    swap = memory["swap"]
    assert swap["source"] == "/proc/vmstat pswpin/pswpout"
    assert 0 <= swap["pages_in"] + swap["pages_out"] <= around
    assert memory["swapped"] is swap["swapped"] is (swap["pages_in"] + swap["pages_out"] > 0)


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
