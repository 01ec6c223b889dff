"""Distributed: every rank trains the same number of arrays, and keeps its base frozen."""

from lora_harness.core.checking import Check, Measurement, register


@register
class TrainableCountsMatchAcrossRanks(Check):
    name = "trainable_counts_match_across_ranks"
    summary = "every rank has the same trainable array count and an unchanged base"
    symptom = "One host runs another recipe or version: different layers adapted, or its base weights drift."
    remedy = (
        "Deploy the same harness and flags to every host (lora-harness remote run does) and rerun."
    )
    requires = ("weights", "distributed")
    shown_failing_in = "tests/test_distributed_checks.py::test_trainable_counts_match_across_ranks"

    def measure(self, ctx) -> Measurement:
        ranks = ctx.training.ranks
        counts, changed = ranks.trainable_arrays, ranks.base_changed
        return Measurement(
            len(set(counts)) - 1 + sum(changed),
            0,
            {"trainable_arrays": counts, "base_changed": changed},
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed == 0:
            return (
                "pass",
                f"{ev['trainable_arrays'][0]} trainable arrays and a frozen base on every rank",
            )
        return (
            "fail",
            f"per-rank trainable arrays {ev['trainable_arrays']}, base tensors changed {ev['base_changed']}",
        )
