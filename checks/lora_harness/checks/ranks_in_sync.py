"""Distributed: every rank ends with bit-identical LoRA parameters."""

from lora_harness.core.checking import Check, Measurement, register


@register
class RanksInSync(Check):
    name = "ranks_in_sync"
    summary = "after N data-parallel steps every rank's LoRA parameters are bit-identical"
    symptom = (
        "Ranks drift apart (a rank skips the gradient average, different seeds or data order), "
        "so the adapter saved by rank 0 is not what the others trained."
    )
    remedy = (
        "Average gradients on every rank every step (mlx.nn.utils.average_gradients), seed "
        "LoRA init identically and launch every rank with the same code and flags."
    )
    requires = ("weights", "distributed")
    catches = ("rank_skips_average",)

    def measure(self, ctx) -> Measurement:
        digests = ctx.training.ranks.adapter_digests
        differing = [rank for rank, row in enumerate(digests) if row != digests[0]]
        return Measurement(len(differing), 0, {"ranks": len(digests), "differing_ranks": differing})

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ranks = measurement.evidence["ranks"]
        if measurement.observed == 0:
            return "pass", f"LoRA parameters bit-identical on all {ranks} ranks"
        return (
            "fail",
            f"ranks {measurement.evidence['differing_ranks']} differ from rank 0 after training",
        )
