"""Each fault of the catalogue changes exactly what it claims, applied the same way on every path."""

import pytest

from lora_harness.lora.faults import ALL_FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT, STEPS, Recipe
from lora_harness.runs import selftest
from lora_harness.runs.run import settings_from


def _swapped(recipe: Recipe) -> set[str]:
    return {s for s in STEPS if getattr(recipe, s) is not getattr(CORRECT, s)}


def _overridden(lora: LoRAConfig) -> set[str]:
    default = LoRAConfig()
    return {k for k in default.to_dict() if getattr(lora, k) != getattr(default, k)}


@pytest.mark.parametrize("name", sorted(ALL_FAULTS))
def test_each_fault_changes_exactly_what_it_claims(name):
    fault = ALL_FAULTS[name]
    lora, recipe = fault.applied_to(LoRAConfig())
    assert _swapped(recipe) == set(fault.swapped_steps)
    assert _overridden(lora) == set(fault.lora_overrides)
    assert fault.swapped_steps or fault.lora_overrides, "a fault must change something"
    assert recipe.name == name


@pytest.mark.parametrize("name", sorted(ALL_FAULTS))
def test_run_and_selftest_apply_a_fault_the_same_way(name):
    # run --inject-fault and the pytest plugin go through settings_from; selftest through configured
    injected = settings_from({"inject_fault": name})
    in_selftest = selftest.configured(settings_from({}), ALL_FAULTS[name])
    assert (injected.lora, injected.recipe) == in_selftest


def test_inject_fault_keeps_the_faults_lora_overrides():
    # run --inject-fault huge_scale once dropped the scale override, so the fault was not applied
    settings = settings_from({"inject_fault": "huge_scale"})
    assert settings.lora.scale == ALL_FAULTS["huge_scale"].lora_overrides["scale"]


def test_a_fault_applies_on_top_of_the_users_own_settings():
    lora, _ = ALL_FAULTS["huge_scale"].applied_to(LoRAConfig(rank=16, num_layers=2))
    assert (lora.rank, lora.num_layers) == (16, 2)


@pytest.mark.parametrize("kind", ["text", "completions", "chat"])
def test_data_without_terminator_drops_the_end_in_every_row_format(fixture_cache, kind):
    # On chat rows (a real instruct model's data) the fault once raised KeyError 'text', which
    # the self-test counted as caught because every check errored.
    from mlx_lm import load

    from lora_harness.checks.training_examples_terminated import _Ends, _tokens
    from lora_harness.models.sources import resolve
    from lora_harness.text.data import tokenized_dataset
    from lora_harness.text.generation import stop_token_ids
    from tests.test_trainer_checks import rows_of

    _, tokenizer = load(resolve("fixture:tiny").path)
    rows = rows_of(kind)
    ends = _Ends(stop_token_ids(tokenizer, resolve("fixture:tiny").path), tokenizer)
    fault = ALL_FAULTS["data_without_terminator"].applied_to(LoRAConfig())[1]
    for dataset, terminated in [
        (tokenized_dataset(rows, tokenizer), True),
        (fault.tokenize(rows, tokenizer), False),
    ]:
        assert [ends.terminated(_tokens(dataset[i])) for i in range(len(rows))] == [
            terminated
        ] * len(rows)
