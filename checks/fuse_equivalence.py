"""The model fused through mlx-lm's fuse path computes what base + adapter computes."""

import mlx.core as mx

from lora_harness.core.checking import Check, Measurement, logit_difference, register
from lora_harness.lora.adapters import rejected_message, rejection_guard


@register
class FuseEquivalence(Check):
    name = "fuse_equivalence"
    summary = "fused model = base + adapter (same greedy tokens, near-identical logits) and != base"
    symptom = (
        "The fused model behaves like the base model or like neither (re-quantisation swamping "
        "the LoRA delta, a fuse that drops lora_b, wrong scale): mlx-lm #1172, PR #1564."
    )
    remedy = (
        "Fuse with mlx_lm.fuse (or module.fuse() for every LoRA module); for quantised bases try "
        "--dequantize and compare again."
    )
    requires = ("weights",)
    relative_tolerance = 1e-4

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        adapter, fused, base = (
            ctx.adapter.loaded_logits,
            ctx.adapter.fused_logits,
            ctx.model.base_logits,
        )
        distance = logit_difference(fused, adapter)[1]
        agreement = mx.mean(mx.argmax(fused, axis=-1) == mx.argmax(adapter, axis=-1)).item()
        from_base = mx.max(mx.abs(fused - base)).item()
        evidence = {"greedy_token_agreement": agreement, "fused_vs_base_max_change": from_base}
        return Measurement(distance, self.relative_tolerance, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        ev = measurement.evidence
        if ev["fused_vs_base_max_change"] == 0:
            return "fail", "the fused model is identical to the base model: the LoRA delta was lost"
        if measurement.observed > measurement.expected or ev["greedy_token_agreement"] < 1.0:
            return "fail", (
                f"fused differs from base + adapter: relative logit distance {measurement.observed:.3g}, "
                f"greedy agreement {ev['greedy_token_agreement']:.0%}"
            )
        return (
            "pass",
            f"fused = base + adapter (relative distance {measurement.observed:.1e}, 100% greedy agreement)",
        )
