"""Distributed checks judged on per-rank evidence, without a launcher.

A rank that adapts other layers (or whose base drifts) cannot be simulated under
mlx.launch without desynchronising the collectives themselves, so these tests hand the
check the all-gathered per-rank evidence such a run would produce.
"""

from __future__ import annotations

import pytest

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs.context import RunContext
from lora_harness.runs.suites import all_checks
from lora_harness.runs.training import RanksOutcome, TrainingOutcome


def _distributed_context(fixture_source, **extra) -> RunContext:
    ctx = RunContext(fixture_source, LoRAConfig())
    ctx.group = object()  # offers("distributed"): the evidence below stands in for the gather
    ctx._training = TrainingOutcome(
        metrics=[],
        gradient_keys=set(),
        optimizer_state_keys=set(),
        base_before={},
        base_after={},
        adapter_before={},
        adapter_after={},
        ranks=RanksOutcome(
            rank=0,
            size=len(extra["trainable_arrays"]),
            adapter_digests=[],
            base_changed=extra["base_changed"],
            trainable_arrays=extra["trainable_arrays"],
            distance_to_single=0.0,
        ),
    )
    return ctx


@pytest.mark.parametrize(
    "counts, changed, status",
    [([56, 56], [0, 0], "pass"), ([56, 112], [0, 0], "fail"), ([56, 56], [0, 3], "fail")],
    ids=["same-recipe", "rank-adapts-other-layers", "rank-base-drifts"],
)
def test_trainable_counts_match_across_ranks(fixture_source, counts, changed, status):
    ctx = _distributed_context(fixture_source, trainable_arrays=counts, base_changed=changed)
    result = all_checks()["trainable_counts_match_across_ranks"]().run(ctx)
    assert result.status == status, result.message


def test_distributed_checks_skip_outside_a_launch(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig())
    for name in (
        "ranks_in_sync",
        "distributed_matches_single",
        "trainable_counts_match_across_ranks",
    ):
        result = all_checks()[name]().run(ctx)
        assert result.status == "skip" and "mlx.launch" in result.message
