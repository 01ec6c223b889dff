"""Every check passes on the correct recipe and fails on the faults it declares (`catches`)."""

from __future__ import annotations

import dataclasses

import pytest

from lora_harness.lora.faults import FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs import suites
from lora_harness.runs.run import Settings
from lora_harness.runs.selftest import caught_table, run_selftest
from lora_harness.runs.suites import all_checks
from tests.support.helpers import run_gate


@pytest.fixture(scope="module")
def selftest_section(fixture_source):
    """One self-test run (clean recipe + every fault) shared by the matrix tests."""
    settings = Settings(model=None, lora=LoRAConfig(), pins={}, suite=None, check_names=suites.GATE)
    return run_selftest(fixture_source, settings, list(FAULTS))


@pytest.fixture(scope="module")
def clean_results(selftest_section):
    return {r["name"]: r for r in selftest_section["clean"]}


@pytest.mark.slow  # the full self-test: clean recipe + every fault
def test_clean_recipe_passes_every_gate_check(clean_results):
    assert set(clean_results) == set(suites.GATE)
    bad = {n: r["message"] for n, r in clean_results.items() if r["status"] != "pass"}
    assert bad == {}


@pytest.mark.slow
def test_dora_clean_recipe_passes_every_gate_check(fixture_source):
    results = run_gate(fixture_source, fine_tune_type="dora")
    bad = {n: r.message for n, r in results.items() if r.status != "pass"}
    assert bad == {}


@pytest.mark.slow
@pytest.mark.parametrize("fault_name", list(FAULTS))
def test_fault_fails_exactly_the_checks_that_declare_it(selftest_section, fault_name):
    # The checks' `catches` are the fault x check matrix the harness promises: a change
    # that blinds a check, or a check that fails where it does not say so, fails here.
    (entry,) = [e for e in selftest_section["faults"] if e["name"] == fault_name]
    statuses = entry["statuses"]
    assert [n for n, s in statuses.items() if s == "error"] == [], (
        "a fault must be caught by a failing check, not by a crash"
    )
    failed = {n for n, s in statuses.items() if s == "fail"}
    assert failed == set(suites.catchers(fault_name, suites.GATE))
    assert entry["declared_not_failed"] == []
    assert entry["caught"] or entry["no_effect"]


@pytest.mark.slow
@pytest.mark.parametrize("check_name", suites.GATE)
def test_gate_check_fails_on_its_declared_faults_and_passes_clean(
    selftest_section, clean_results, check_name
):
    # Generic: a new gate check is shown failing on what it declares, and passing clean,
    # without a test of its own (tests/test_catalogue.py asks that it declares something).
    assert clean_results[check_name]["status"] == "pass", clean_results[check_name]["message"]
    declared = [f for f in all_checks()[check_name].catches if f in FAULTS]
    assert declared, f"{check_name} declares no self-test fault it catches"
    for entry in selftest_section["faults"]:
        if entry["name"] in declared:
            assert entry["statuses"][check_name] == "fail", (entry["name"], check_name)


@pytest.mark.slow
def test_the_measured_table_is_the_declared_one(selftest_section):
    # The README's table is drawn from the declarations (cheap); this run measures it.
    assert caught_table(selftest_section) == caught_table()
    assert selftest_section["summary"]["unkept_declarations"] == []


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_failing_checks_tell_the_user_what_to_do(fixture_source):
    fault = FAULTS["unfreeze_without_keys"]
    results = run_gate(fixture_source, fault.recipe)
    failed = [r for r in results.values() if r.status == "fail"]
    assert failed and all(r.remedy for r in failed)


@pytest.mark.slow
def test_skipping_optimizer_init_has_no_effect_in_this_mlx(selftest_section):
    # MLX creates optimizer state lazily from the first gradients, so skipping init is
    # harmless here; measured, not assumed: parameters end within two clean runs' spread.
    (entry,) = [e for e in selftest_section["faults"] if e["name"] == "skip_optimizer_init"]
    assert entry["no_effect"] and not entry["caught"]
    assert entry["evidence"]["base_identical_to_clean_run"]
    assert entry["evidence"]["adapter_distance_to_clean_run"] <= entry["evidence"]["allowed"]
    assert selftest_section["summary"]["verdict"] == "pass"


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_adapters_changed_skips_with_a_reason_below_two_steps(fixture_source):
    results = run_gate(fixture_source, iters=1)
    assert results["adapters_changed"].status == "skip"
    assert "lora_a only moves on step 2" in results["adapters_changed"].message


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_a_crashing_check_is_an_error_result_not_a_crash(fixture_source):
    def broken_count(model):
        raise RuntimeError("boom")

    recipe = dataclasses.replace(CORRECT, count_trainable=broken_count)
    results = run_gate(fixture_source, recipe)
    assert results["trainable_array_count"].status == "error"
    assert "boom" in results["trainable_array_count"].message
    assert results["lora_layer_count"].status == "pass"


def test_pinned_expectation_that_disagrees_fails(fixture_source):
    from lora_harness.lora.lora_config import LoRAConfig
    from lora_harness.runs.context import RunContext

    ctx = RunContext(fixture_source, LoRAConfig(), pins={"trainable_arrays": 392})
    result = all_checks()["trainable_array_count"]().run(ctx)
    assert (result.status, result.observed, result.expected) == ("fail", 56, 392)
    assert result.evidence["pinned"] is True


def test_structural_checks_run_and_weight_checks_skip_on_shape_models():
    from lora_harness.models.sources import resolve

    results = run_gate(resolve("shape:qwen2.5-7b"))
    for name in suites.STRUCTURE:
        assert results[name].status == "pass", results[name].message
    for name in set(suites.GATE) - set(suites.STRUCTURE):
        assert results[name].status == "skip"
        assert "shape-only" in results[name].message


def test_every_check_documents_symptom_and_remedy():
    for name, check in all_checks().items():
        assert check.summary and check.symptom and check.remedy, name
