"""Every check passes on the correct recipe and fails on the fault it exists for."""

from __future__ import annotations

import dataclasses

import pytest

from lora_harness.lora.faults import FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs import suites
from lora_harness.runs.run import Settings
from lora_harness.runs.selftest import run_selftest
from lora_harness.runs.suites import all_checks
from tests.support.helpers import run_gate

# The fault x check matrix the harness promises: a change that blinds a check fails here.
CAUGHT_BY = {
    "unfreeze_without_keys": {
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "frozen_base_unchanged",
        "adapter_roundtrip",
        "adapter_file_exact",
        "adapter_applied",
        "fuse_equivalence",
    },
    "hand_built_lora_after_freeze": {
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "frozen_base_unchanged",
        "adapter_roundtrip",
        "adapter_file_exact",
        "adapter_applied",
        "fuse_equivalence",
    },
    "legacy_qv_keys": {
        "lora_layer_count",
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "adapter_file_exact",
    },
    "partial_num_layers": {
        "lora_layer_count",
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "adapter_file_exact",
    },
    "nonzero_lora_b_init": {
        "identity_at_init",
    },
    "optimizer_init_all_parameters": {
        "optimizer_state_matches_trainable",
    },
    "mx_value_and_grad": {
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "frozen_base_unchanged",
        "adapter_roundtrip",
    },
    "count_without_tree_flatten": {
        "trainable_array_count",
    },
    "lora_a_frozen": {
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "adapters_changed",
        "adapter_roundtrip",
        "adapter_file_exact",
        "fuse_equivalence",
    },
    # The adapters do change here (every one to NaN); the old 32-bit digest collided on
    # NaN-filled lora_b tensors and called them unchanged.
    "zero_loss_tokens": {
        "loss_finite_and_decreasing",
        "loss_covers_expected_tokens",
        "no_endoftext_spam",
        "voice_score_baseline",
        "adapter_roundtrip",
        "adapter_applied",
        "fuse_equivalence",  # NaN adapters: the fuse once passed on "distance nan"
    },
    "huge_scale": {
        "adapters_changed",
        "loss_finite_and_decreasing",
        "adapter_applied",
        "fuse_equivalence",
    },
    "loss_scores_padding": {
        "loss_covers_expected_tokens",
    },
    "loss_mask_on_inputs": {
        "loss_covers_expected_tokens",
    },
    "data_without_terminator": {
        "training_examples_terminated",
    },
    "destructive_full_model_lr": {
        "trainable_array_count",
        "trainable_parameter_count",
        "trainable_keys_exact",
        "gradient_tree_matches_trainable",
        "optimizer_state_matches_trainable",
        "frozen_base_unchanged",
        "loss_finite_and_decreasing",
        "no_endoftext_spam",
        "voice_score_baseline",
        "adapter_roundtrip",
        "adapter_file_exact",
        "adapter_applied",
        "fuse_equivalence",
    },
    "loss_sign_flipped": {
        "loss_finite_and_decreasing",
        "no_endoftext_spam",
        "voice_score_baseline",
    },
    "fuse_drops_delta": {
        "fuse_equivalence",
    },
    "adapter_saved_not_applied": {
        "adapter_roundtrip",
        "adapter_applied",
        "fuse_equivalence",
    },
    # mlx-lm raises KeyError: a finding of the adapter checks, never an internal error.
    "adapter_config_without_scale": {
        "adapter_roundtrip",
        "adapter_applied",
        "fuse_equivalence",
    },
}


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


def test_every_gate_check_is_shown_failing_by_some_fault():
    caught_somewhere = set().union(*CAUGHT_BY.values())
    assert set(suites.GATE) <= caught_somewhere


def test_the_matrix_covers_the_whole_catalogue():
    assert set(CAUGHT_BY) | {"skip_optimizer_init"} == set(FAULTS)


@pytest.mark.slow
@pytest.mark.parametrize("fault_name", sorted(CAUGHT_BY))
def test_fault_is_caught_by_exactly_the_promised_checks(selftest_section, fault_name):
    (entry,) = [e for e in selftest_section["faults"] if e["name"] == fault_name]
    statuses = entry["statuses"]
    assert [n for n, s in statuses.items() if s == "error"] == [], (
        "a fault must be caught by a failing check, not by a crash"
    )
    assert {n for n, s in statuses.items() if s == "fail"} == CAUGHT_BY[fault_name]
    assert entry["caught"] and set(entry["caught_by"]) == set(FAULTS[fault_name].expected_checks)


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


def test_adapters_changed_skips_with_a_reason_below_two_steps(fixture_source):
    results = run_gate(fixture_source, iters=1)
    assert results["adapters_changed"].status == "skip"
    assert "lora_a only moves on step 2" in results["adapters_changed"].message


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
