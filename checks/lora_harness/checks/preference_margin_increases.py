"""DPO: the chosen - rejected reward margin grows on the training pairs."""

from lora_harness.core.checking import Check, Measurement, register


@register
class PreferenceMarginIncreases(Check):
    name = "preference_margin_increases"
    summary = "DPO reward margin (chosen - rejected, vs reference) grows on the training pairs"
    symptom = (
        "DPO trains but preferences do not move, or move the wrong way (a flipped loss sign, "
        "chosen and rejected swapped, the adapter not in the graph)."
    )
    remedy = "Check the loss is -log sigmoid(beta * margin), the chosen/rejected order, and the trainable keys."
    requires = ("weights", "dpo")
    catches = ("dpo_loss_sign_flipped",)

    def measure(self, ctx) -> Measurement:
        dpo = ctx.training.dpo
        return Measurement(
            dpo.margin_after,
            f"> {dpo.margin_before:.4g}",
            {"margin_before": dpo.margin_before, "margin_after": dpo.margin_after},
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        before, after = measurement.evidence["margin_before"], measurement.evidence["margin_after"]
        if after > before:
            return "pass", f"reward margin {before:.4f} -> {after:.4f}"
        return "fail", f"reward margin did not grow: {before:.4f} -> {after:.4f}"
