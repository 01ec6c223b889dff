"""The parts behind honest bench figures: intervals, swap counters, the step/forward reading."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from lora_harness.bench import bench, spread, swap
from lora_harness.cli.bench_cmd import describe
from lora_harness.reports import bench_figures


def test_an_interval_covering_one_is_within_noise_and_one_above_is_not():
    noisy = spread.summarise([0.95, 1.19, 1.03, 0.98, 1.10, 1.01, 0.97, 1.12, 1.05])
    assert noisy["verdict"] == "within noise" and noisy["interval_coverage"] >= 0.95
    faster = spread.summarise([1.2 + i / 100 for i in range(9)])
    assert faster["verdict"] == "above 1" and faster["interval"][0] > 1


def test_the_interval_always_holds_the_median():
    values = [3.0, 1.0, 2.0, 5.0, 4.0, 9.0, 0.5]
    summary = spread.summarise(values, neutral=None)
    low, high = summary["interval"]
    assert low <= summary["median"] <= high and "spread only" in summary["verdict"]


def test_linux_swap_counters_come_from_vmstat_and_deltas_decide():
    before = swap._linux("nr_free_pages 10\npswpin 5\npswpout 7\n")
    after = swap._linux("nr_free_pages 3\npswpin 5\npswpout 9\n")
    assert swap.activity(before, before)["swapped"] is False
    moved = swap.activity(before, after)
    assert moved["swapped"] is True and moved["pages_out"] == 2
    assert swap.activity(None, after)["swapped"] is None
    assert swap.counters() is None or "pages_in" in swap.counters()


def test_step_forward_reading_names_frozen_weights_only_when_they_get_gradients():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model.freeze()
    model.layers[1].unfreeze()
    exact, none = bench._gradient_reading({"layers.1.weight", "layers.1.bias"}, model)
    assert "frozen weights" not in exact and none == []
    leaked, names = bench._gradient_reading({"layers.0.weight", "layers.1.weight"}, model)
    assert leaked.startswith("frozen weights get gradients") and names == ["layers.0.weight"]
    mx.eval(model.parameters())


def test_the_bench_line_shows_the_seconds_behind_the_ratio():
    line = describe(
        {
            "ratio": 1.05,
            "spread": spread.summarise([0.9, 1.05, 1.2]),
            "seconds": {"harness_s": 1.5, "mlx_lm_s": 1.575},
        }
    )
    assert "harness_s 1.5" in line and "mlx_lm_s 1.575" in line and "within noise" in line


def _fleet(step_over_forward: float, run_id: str) -> dict:
    figures = {name: 1.0 for name in bench_figures.FIGURES}
    host = {"name": "studio-0", "status": "passed", "report": None}
    return {
        "kind": "fleet",
        "run": {"id": run_id},
        "hosts": [
            {**host, "bench": {"figures": {**figures, "step_over_forward": step_over_forward}}}
        ],
    }


def test_compare_of_two_fleet_benches_flags_the_host_that_regressed(tmp_path):
    import json

    from lora_harness.reports import compare

    same = compare.compare_fleets(_fleet(2.0, "a"), _fleet(2.02, "b"))
    assert same["regressions"] == []
    worse = compare.compare_fleets(_fleet(2.0, "a"), _fleet(3.0, "b"))
    assert worse["regressions"] == ["studio-0: step_over_forward"]
    assert "studio-0: step_over_forward: 2 -> 3  REGRESSION" in compare.describe(worse)
    gated = compare.compare_fleets(_fleet(2.0, "a"), _fleet(3.0, "b"), {"step_over_forward": 60})
    assert gated["regressions"] == []
    json.dumps(worse)  # the --json output
