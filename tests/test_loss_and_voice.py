"""loss_finite_and_decreasing and voice_score_baseline: no false alarm on correct runs, and
diverging or voice-losing runs still flagged. Thresholds come from the run, not constants."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_harness.lora.faults import FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs.context import RunContext
from lora_harness.runs.given import lora_config_from
from lora_harness.runs.suites import all_checks


def _check(ctx, name):
    return all_checks()[name]().run(ctx)


@pytest.mark.slow
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 50),
    rank=st.sampled_from([4, 8, 16, 32]),
    num_layers=st.sampled_from([-1, 1, 2, 4]),
    keys=st.sampled_from([None, ["self_attn.q_proj", "self_attn.v_proj"], ["mlp.down_proj"]]),
)
def test_loss_check_raises_no_false_alarm_on_correct_runs(
    fixture_source, seed, rank, num_layers, keys
):
    # The CLI's defaults for this rank (its learning rate follows the rank), as a user gets them.
    values = {"model": "fixture:tiny", "seed": seed, "rank": rank, "num_layers": num_layers}
    lora = lora_config_from({**values, "keys": keys})
    result = _check(RunContext(fixture_source, lora), "loss_finite_and_decreasing")
    assert result.status == "pass", (seed, rank, num_layers, keys, result.message)


def test_a_late_spike_is_not_a_failure(fixture_source):
    # seed 1, rank 16: 0.46 ... 0.196 at step 7, then 0.55 at step 8 (a correct run)
    ctx = RunContext(fixture_source, LoRAConfig(seed=1, rank=16))
    result = _check(ctx, "loss_finite_and_decreasing")
    assert result.status == "pass", result.message
    assert "median of the last 4 steps" in result.message


@pytest.mark.slow
@pytest.mark.parametrize(
    "lora",
    [LoRAConfig(learning_rate=3e-3), LoRAConfig(scale=64.0)],
    ids=["learning-rate-3e-3", "scale-64"],
)
def test_diverging_runs_are_flagged(fixture_source, lora):
    result = _check(RunContext(fixture_source, lora), "loss_finite_and_decreasing")
    assert result.status == "fail", result.message
    assert "did not fall" in result.message


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["zero_loss_tokens", "huge_scale", "loss_sign_flipped"])
def test_loss_faults_are_still_caught(fixture_source, fault):
    import dataclasses

    spec = FAULTS[fault]
    lora = dataclasses.replace(LoRAConfig(), **spec.lora_overrides)
    ctx = RunContext(fixture_source, lora, recipe=spec.recipe)
    assert _check(ctx, "loss_finite_and_decreasing").status == "fail"


@pytest.mark.slow
def test_voice_tolerance_comes_from_the_scorers_spread(fixture_source):
    # batch size 1 overfits one example: its voice score dips within the scorer's noise
    ctx = RunContext(fixture_source, LoRAConfig(batch_size=1))
    result = _check(ctx, "voice_score_baseline")
    assert result.status == "pass", result.message
    evidence = result.evidence
    assert evidence["baseline_spread"] > 0 and evidence["trained_spread"] > 0
    assert "bootstrap spread" in evidence["tolerance_source"]


@pytest.mark.slow
def test_negated_loss_still_loses_the_voice(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig(), recipe=FAULTS["loss_sign_flipped"].recipe)
    result = _check(ctx, "voice_score_baseline")
    assert result.status == "fail", result.message
