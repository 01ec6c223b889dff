"""The self-test command, its verdict logic, and no false alarms on the clean recipe."""

from __future__ import annotations

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_harness.core.checking import CheckResult
from lora_harness.lora.faults import FAULTS
from lora_harness.reports import json_report
from lora_harness.runs import suites
from lora_harness.runs.selftest import caught_table, judge_fault, markdown_matrix, summarise
from tests.support.helpers import run_gate


def _results(**statuses):
    return [CheckResult(name=n, status=s, summary="") for n, s in statuses.items()]


def _state(value: float, base=(1, 2)):
    import mlx.core as mx

    from lora_harness.runs.selftest import FinalState

    return FinalState({"w": base}, {"lora_a": mx.array([1.0, value])})


def _clean(spread: float):
    from lora_harness.runs.selftest import CleanSpread

    return CleanSpread.measure(_state(1.0), _state(1.0 + spread))


def test_a_fault_that_fails_only_unexpected_checks_is_not_caught():
    fault = FAULTS["nonzero_lora_b_init"]  # expects identity_at_init
    results = _results(identity_at_init="pass", adapters_changed="fail")
    entry = judge_fault(fault, results, _state(2.0), _clean(0.0))
    assert not entry["caught"] and not entry["no_effect"]
    assert entry["also_failed"] == ["adapters_changed"]


def test_a_declared_catcher_that_passes_is_a_finding_that_fails_the_verdict():
    # Never trust a declaration: each check that says it catches the fault must fail on it.
    fault = FAULTS["loss_sign_flipped"]
    declared = suites.catchers(fault.name, suites.GATE)
    blinded = declared[-1]
    results = _results(**{n: "pass" if n == blinded else "fail" for n in declared})
    entry = judge_fault(fault, results, _state(2.0), _clean(0.0))
    assert entry["caught"] and entry["declared_not_failed"] == [blinded]
    summary = summarise([], [entry])
    assert summary["unkept_declarations"] == [{"fault": fault.name, "checks": [blinded]}]
    assert summary["verdict"] == "fail"
    assert "!" in markdown_matrix({"checks": declared, "faults": [entry]})
    from lora_harness.reports.html import _selftest_view

    (row,) = _selftest_view({"checks": declared, "faults": [entry]})["rows"]
    assert row["badge"] == "fail" and f"declared but passed: {blinded}" in row["verdict"]


def test_a_crash_is_never_a_catch():
    # data_without_terminator once raised KeyError on chat rows: every check errored and the
    # self-test counted the fault as caught by its declared catcher.
    fault = FAULTS["data_without_terminator"]
    declared = suites.catchers(fault.name, suites.GATE)
    results = _results(**{n: "error" for n in suites.GATE})
    entry = judge_fault(fault, results, None, _clean(0.0))
    assert not entry["caught"] and not entry["no_effect"]
    assert entry["errored"] == list(suites.GATE) and entry["evidence"]["errored"]
    summary = summarise([], [entry])
    assert summary["errored"] == [fault.name] and summary["verdict"] == "fail"
    assert summary["escaped"] == []
    assert f"`{fault.name}` | **ERRORED**" in markdown_matrix(
        {"checks": declared, "faults": [entry]}
    )
    from lora_harness.cli.selftest_cmd import _fault_line

    assert _fault_line(entry).lstrip().startswith(
        "ERRORED"
    ) and "a crash judges nothing" in _fault_line(entry)
    from lora_harness.reports.html import _selftest_view

    (row,) = _selftest_view({"checks": declared, "faults": [entry]})["rows"]
    assert row["badge"] == "fail" and row["verdict"].startswith("ERRORED in ")
    # Where a declared catcher failed, checks that raised beside it (MLX refusing to
    # differentiate a thawed 4-bit base) are listed, and the fault is caught.
    results = _results(training_examples_terminated="fail", adapters_changed="error")
    entry = judge_fault(fault, results, None, _clean(0.0))
    assert entry["caught"] and entry["errored"] == ["adapters_changed"]
    assert summarise([], [entry])["verdict"] == "pass"


def test_a_fault_without_effect_keeps_no_declaration_to_check():
    fault = FAULTS["skip_optimizer_init"]
    entry = judge_fault(
        fault, _results(optimizer_state_matches_trainable="pass"), _state(1.0), _clean(0.0)
    )
    assert entry["no_effect"] and entry["declared_not_failed"] == []
    assert summarise([], [entry])["verdict"] == "pass"


def test_no_effect_is_judged_against_the_spread_of_two_clean_runs():
    fault = FAULTS["skip_optimizer_init"]
    passing = _results(x="pass")
    assert judge_fault(fault, passing, _state(1.0), _clean(0.0))["no_effect"]
    # Off by more than rounding, with clean runs bit-identical: an effect.
    assert not judge_fault(fault, passing, _state(1.01), _clean(0.0))["no_effect"]
    # The same offset is no effect where two clean runs differ by as much (a GPU backend).
    entry = judge_fault(fault, passing, _state(1.01), _clean(0.01))
    assert entry["no_effect"], entry["evidence"]
    assert entry["evidence"]["clean_run_spread"] > 0
    # The base is frozen, so it must match bit for bit on any backend.
    assert not judge_fault(fault, passing, _state(1.0, base=(1, 3)), _clean(0.01))["no_effect"]
    assert not judge_fault(fault, passing, None, _clean(0.0))["no_effect"], (
        "untrained is not evidence"
    )


def test_selftest_cli_json_and_markdown(cli, tmp_path):
    result = cli(
        "selftest",
        "--fault",
        "unfreeze_without_keys",
        "--fault",
        "skip_optimizer_init",
        "--json",
        "-",
        "--markdown",
        "matrix.md",
        "--out",
        "o",
    )
    assert result.returncode == 0, result.stderr
    report = result.json()
    jsonschema.validate(report, json_report.schema())
    section = report["selftest"]
    assert [f["name"] for f in section["faults"]] == [
        "unfreeze_without_keys",
        "skip_optimizer_init",
    ]
    assert section["faults"][0]["caught"] and section["faults"][1]["no_effect"]
    assert report["summary"]["fail"] == report["summary"]["warn"] == 0
    table = (tmp_path / "matrix.md").read_text()
    assert table == caught_table(section) + "\n" + markdown_matrix(section)
    assert "`unfreeze_without_keys` | yes" in table and "no effect" in table
    assert section["summary"]["unkept_declarations"] == []


def test_selftest_refuses_unknown_faults_and_shape_models(cli):
    unknown = cli("selftest", "--fault", "nope")
    assert unknown.returncode == 2 and "selftest --list" in unknown.stderr
    shape = cli("selftest", "--model", "shape:qwen2.5-7b")
    assert shape.returncode == 2 and "shape-only" in shape.stderr


@pytest.mark.slow
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    rank=st.sampled_from([2, 4, 8, 16]),
    num_layers=st.sampled_from([-1, 1, 2, 4]),
    keys=st.sampled_from([None, ["self_attn.q_proj", "self_attn.v_proj"], ["mlp.down_proj"]]),
    fine_tune_type=st.sampled_from(["lora", "dora"]),
)
def test_clean_recipe_raises_no_false_alarm(
    fixture_source, seed, rank, num_layers, keys, fine_tune_type
):
    results = run_gate(
        fixture_source,
        seed=seed,
        rank=rank,
        num_layers=num_layers,
        keys=keys,
        fine_tune_type=fine_tune_type,
    )
    alarms = {n: r.message for n, r in results.items() if r.status in ("fail", "error", "warn")}
    assert alarms == {}
