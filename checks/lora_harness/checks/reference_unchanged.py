"""DPO: the reference model's log-probs are bit-identical before and after training."""

import mlx.core as mx

from lora_harness.core.checking import Check, Measurement, register


@register
class ReferenceUnchanged(Check):
    name = "reference_unchanged"
    summary = "DPO reference log-probs (base, adapter disabled) are bit-identical across training"
    symptom = (
        "The reference drifts with the policy (base weights trained, a shared module updated): "
        "the DPO margin measures nothing and the model collapses."
    )
    remedy = (
        "Keep the base frozen (only lora_a/lora_b trainable); compute reference log-probs with "
        "the adapter disabled and stop_gradient."
    )
    requires = ("weights", "dpo")
    catches = ("dpo_reference_trained",)

    def measure(self, ctx) -> Measurement:
        dpo = ctx.training.dpo
        change = mx.max(mx.abs(dpo.reference_after - dpo.reference_before)).item()
        return Measurement(change, 0.0, {"bit_identical": dpo.reference_bit_identical})

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.evidence["bit_identical"]:
            return "pass", "reference log-probs bit-identical after training"
        return (
            "fail",
            f"reference log-probs moved during training (max change {measurement.observed:.3g})",
        )
