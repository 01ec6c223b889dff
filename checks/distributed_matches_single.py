"""Distributed: k ranks train the same adapter as one process on the whole batches."""

from lora_harness.core.checking import Check, Measurement, register


@register
class DistributedMatchesSingle(Check):
    name = "distributed_matches_single"
    summary = "LoRA weights after N steps on k ranks match one process on the concatenated batches"
    symptom = (
        "Data-parallel training computes something else than single-process training "
        "(gradients summed instead of averaged, shards overlapping or missing)."
    )
    remedy = (
        "Shard batches disjointly across ranks and average (not sum) gradients before the update."
    )
    requires = ("weights", "distributed")
    relative_tolerance = 1e-3

    def measure(self, ctx) -> Measurement:
        distance = ctx.training.ranks.distance_to_single
        return Measurement(distance, self.relative_tolerance, {"size": ctx.training.ranks.size})

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.observed <= measurement.expected:
            return (
                "pass",
                f"matches single-process training (relative distance {measurement.observed:.1e})",
            )
        return (
            "fail",
            f"differs from single-process training: relative distance {measurement.observed:.3g}",
        )
