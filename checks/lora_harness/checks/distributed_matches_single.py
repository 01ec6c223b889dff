"""Distributed: k ranks train the same adapter as one process on the whole batches.

Criterion: d(rank's adapters, single process) <= 4 floor + 8 u * steps (harness/core/numerics.py),
d being max |difference| / max |reference| over the adapter tensors, floor the distance
between two single-process references that sum the shards in opposite orders (this
backend's rounding), u the unit roundoff of the adapters' dtype; each step rounds again.
"""

from lora_harness.core import numerics
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
    catches = ("rank_skips_average",)

    def measure(self, ctx) -> Measurement:
        ranks = ctx.training.ranks
        allowed = ranks.allowed_distance
        if allowed is None:  # evidence gathered without a floor: one rounding per step
            precision = numerics.precision_of_arrays([])  # float32, the adapters' usual dtype
            allowed = numerics.allowed_difference(precision, roundings=ctx.lora.iters)
        evidence = {
            "size": ranks.size,
            "noise_floor": ranks.single_noise_floor,
            "allowed": allowed,
            "distance": numerics.reportable(ranks.distance_to_single),
        }
        return Measurement(ranks.distance_to_single, allowed, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        distance, allowed = measurement.observed, measurement.expected
        if numerics.within(distance, allowed):
            return (
                "pass",
                f"matches single-process training (relative distance {distance:.1e}, "
                f"allowed {allowed:.1e})",
            )
        return (
            "fail",
            f"differs from single-process training: relative distance {distance:.3g} "
            f"(allowed {allowed:.3g}, floor {measurement.evidence['noise_floor']:.3g})",
        )
