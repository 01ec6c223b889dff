"""Never pass what was not run or not kept (issue 24): recipes that say whose steps ran, a
fuse verdict on the deliverable, loss coverage independent of the recipe's own tokenizer,
and errors reported where they happened."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest

from lora_harness.lora.faults import FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.reports import json_report
from lora_harness.runs import suites
from lora_harness.runs.context import RunContext
from lora_harness.runs.run import recipe_for
from lora_harness.runs.suites import all_checks

ADAPTER_CHECKS = ("adapter_roundtrip", "adapter_applied", "fuse_equivalence")


def _checks(ctx, names) -> dict:
    return {name: all_checks()[name]().run(ctx) for name in names}


# -- 1. recipes: whose steps ran ----------------------------------------------------------


@pytest.mark.parametrize("spec", ["SEED_MANAGER", "SEED_MANAGER_UNFREEZE_BUG", "ONLY_FUSE"])
def test_a_recipe_with_no_training_step_is_exit_2_naming_what_it_has(cli, spec):
    result = cli(
        "run", "--recipe", f"tests.support.recipe_specs:{spec}", "--check", "lora_layer_count"
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "nothing of your training would be judged" in line
    if spec.startswith("SEED"):
        assert "it supplies only count_trainable" in line
        assert "it has apply_lora, train_step, which are not recipe steps" in line


def test_the_example_manager_itself_is_a_usage_error_naming_its_convert(cli):
    spec = "tests.support.recipe_specs:SeedManager"  # imports the example backend's manager
    result = cli("run", "--recipe", spec, "--check", "lora_layer_count")
    assert result.returncode == 2
    from tests.support.recipe_specs import SeedManager

    manager = type(SeedManager()._manager())  # the seed-style MLXAdapterManager
    from lora_harness.core.errors import InputError
    from lora_harness.lora import user_recipe

    with pytest.raises(InputError, match=r"step 'convert' takes \(model"):
        user_recipe.from_object(manager, "mlx_backend.mlx_adapter_manager:MLXAdapterManager")


def test_console_and_report_list_the_users_steps_and_the_filled_ones(cli):
    spec = "tests.support.recipe_specs:AsClass"  # supplies unfreeze only
    result = cli("run", "--recipe", spec, "--check", "trainable_keys_exact", "--json", "-")
    assert result.returncode == 0, result.stderr
    jsonschema.validate(result.json(), json_report.schema())
    filled = [s for s in CORRECT.provenance()["correct_steps"] if s != "unfreeze"]
    assert result.json()["run"]["recipe"] == {
        "name": spec,
        "user_steps": ["unfreeze"],
        "fault_steps": [],
        "correct_steps": filled,
    }
    assert (
        f"recipe {spec}: your steps: unfreeze; filled from the correct recipe: "
        f"{', '.join(filled)}" in result.stderr
    )


def test_a_dpo_recipe_may_supply_only_its_preference_loss():
    from lora_harness.core.errors import InputError
    from lora_harness.lora import user_recipe

    steps = {"preference_loss": CORRECT.preference_loss}
    recipe = user_recipe.from_object(steps, "dpo_only", trainer="dpo")
    assert recipe.provenance()["user_steps"] == ["preference_loss"]
    with pytest.raises(InputError, match="nothing of your training would be judged"):
        user_recipe.from_object(steps, "dpo_only", trainer="sft")


def test_a_users_tokenize_step_that_raises_is_exit_2_naming_it(cli):
    result = cli("run", "--recipe", "tests.support.recipe_specs:TOKENIZE_RAISES")
    assert result.returncode == 2, result.stderr
    assert "its tokenize step raised KeyError: 'text'" in result.stderr
    assert "internal error" not in result.stderr


def test_fuse_dequantize_takes_the_fuse_step_from_the_user():
    recipe = recipe_for({"recipe": "tests.support.recipe_specs:AS_DICT", "fuse_dequantize": True})
    assert recipe.provenance()["user_steps"] == ["unfreeze"]


def test_selftest_says_which_faults_could_not_reach_the_users_code(cli):
    spec = "tests.support.recipe_specs:AsClass"
    result = cli(
        "selftest", "--recipe", spec, "--fault", "unfreeze_without_keys",
        "--fault", "fuse_drops_delta", "--json", "-",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    section = result.json()["selftest"]
    assert section["not_reaching_user_code"] == [{"name": "fuse_drops_delta", "steps": ["fuse"]}]
    assert {e["name"]: e["reaches_user_code"] for e in section["faults"]} == {
        "unfreeze_without_keys": True,
        "fuse_drops_delta": False,
    }
    assert "could not reach your code: 1 fault swap" in result.stderr
    assert "fuse_drops_delta (fuse)" in result.stderr


# -- 2. fuse: the deliverable is judged ---------------------------------------------------


def test_a_fused_model_that_keeps_under_half_the_adapter_fails_and_dequantize_passes(
    fixture_cache,
):
    from lora_harness.models.sources import resolve

    source, lora = resolve("fixture:tiny-q4"), LoRAConfig(learning_rate=2e-5)
    (result,) = _checks(RunContext(source, lora), ["fuse_equivalence"]).values()
    ev = result.evidence
    assert result.status == "fail", result.message
    assert ev["fused_keeps"] < 0.5 and ev["format_keeps"] < 0.5
    assert ev["fuse_did_all_format_allows"] is True  # the format, not the fuse, lost it
    assert "rounding the merged weights to 4-bit" in result.message
    assert "--fuse-dequantize" in result.message
    recipe = recipe_for({"fuse_dequantize": True})
    (result,) = _checks(RunContext(source, lora, recipe=recipe), ["fuse_equivalence"]).values()
    assert result.status == "pass", result.message
    assert result.evidence["fused_keeps"] > 0.5


# -- 4. attribution: errors where they happened -------------------------------------------


def _freeze_everything(model, lora):
    model.freeze()  # nothing trainable: nn.value_and_grad raises "[grad] Must specify ..."


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_a_training_error_is_one_error_never_a_rejected_adapter(fixture_source):
    recipe = dataclasses.replace(CORRECT, name="frozen", unfreeze=_freeze_everything)
    ctx = RunContext(fixture_source, LoRAConfig(), recipe=recipe)
    results = {r.name: r for r in suites.run_checks(ctx, suites.GATE)}
    needed_training = [r for r in results.values() if r.status == "error"]
    assert {r.name for r in needed_training} >= set(ADAPTER_CHECKS) | {"adapters_changed"}
    messages = {r.message for r in needed_training}
    assert messages == {
        "training failed: ValueError: [grad] Must specify at least one argument."
    }, messages
    assert not any("rejected" in r.message for r in results.values())


def test_a_key_missing_from_adapter_config_is_a_finding_with_mlx_lm_message(fixture_source):
    fault = FAULTS["adapter_config_without_scale"]
    lora, recipe = fault.applied_to(LoRAConfig())
    results = _checks(RunContext(fixture_source, lora, recipe=recipe), ADAPTER_CHECKS)
    for result in results.values():
        assert result.status == "fail", (result.name, result.message)
        assert "mlx_lm.load rejected the adapter: KeyError: " in result.message
        assert "'scale'" in result.message and "adapter_config.json lacks" in result.message


class _ConvertFailingOnce:
    """A convert step that raises half-way the first time: a retry would see its mess."""

    calls = 0

    def __call__(self, model, lora):
        type(self).calls += 1
        if type(self).calls == 1:
            model.layers[0].self_attn.q_proj = None  # the half-done conversion
            raise RuntimeError("conversion broke")
        CORRECT.convert(model, lora)


def test_a_recipe_step_that_raises_is_kept_not_retried_on_the_half_converted_model(
    fixture_source,
):
    recipe = dataclasses.replace(CORRECT, name="flaky", convert=_ConvertFailingOnce())
    names = ["lora_layer_count", "trainable_keys_exact", "adapter_roundtrip"]
    results = _checks(RunContext(fixture_source, LoRAConfig(), recipe=recipe), names)
    assert {r.status for r in results.values()} == {"error"}
    assert {r.message for r in results.values()} == {
        "preparing the LoRA model (the recipe's freeze -> convert -> unfreeze) failed: "
        "RuntimeError: conversion broke"
    }
