"""Loading the adapter changes what the model computes."""

import mlx.core as mx

from lora_harness.core.checking import Check, Measurement, register
from lora_harness.lora.adapters import rejected_message, rejection_guard


@register
class AdapterApplied(Check):
    name = "adapter_applied"
    summary = "logits with the adapter loaded differ from the base model's"
    symptom = (
        "The adapter is silently not applied (keys that match no module, strict=False loads, "
        "an untrained adapter): the output is the base model's (mlx-lm #1745, #1725)."
    )
    remedy = (
        "Check adapter_config.json keys/num_layers against the model and that the tensors were "
        "trained (non-zero lora_b); load with mlx_lm.load(model, adapter_path=...)."
    )
    requires = ("weights",)

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        difference = mx.max(mx.abs(ctx.adapter.loaded_logits - ctx.model.base_logits)).item()
        return Measurement(difference, "> 0", {"max_abs_logit_change": difference})

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        if measurement.observed > 0:
            return "pass", f"the adapter changes the logits (max change {measurement.observed:.3g})"
        return (
            "fail",
            "logits with the adapter are identical to the base model's: it is not applied",
        )
