"""Loading the adapter changes what the model computes.

Criterion: the logits with the adapter loaded are finite and differ from the base's by more
than noise: d(adapter, base) > 4 floor + 8 u (harness/core/numerics.py). Non-finite logits
are their own diagnosis (the adapter holds NaN/inf), never "not applied".
"""

import math

from lora_harness.core import numerics
from lora_harness.core.checking import Check, Measurement, register
from lora_harness.lora.adapters import rejected_message, rejection_guard


@register
class AdapterApplied(Check):
    name = "adapter_applied"
    summary = "logits with the adapter loaded differ from the base model's by more than noise"
    symptom = (
        "The adapter is silently not applied (keys that match no module, strict=False loads, "
        "an untrained adapter): the output is the base model's (mlx-lm #1745, #1725)."
    )
    remedy = (
        "Check adapter_config.json keys/num_layers against the model and that the tensors were "
        "trained (non-zero lora_b); load with mlx_lm.load(model, adapter_path=...). Logits "
        "that are NaN come from non-finite adapter tensors: retrain with a lower learning rate."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "zero_loss_tokens",
        "huge_scale",
        "destructive_full_model_lr",
        "adapter_saved_not_applied",
        "adapter_config_without_scale",
    )

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        loaded = ctx.adapter.loaded_logits
        distance = numerics.relative_distance(loaded, ctx.model.base_logits)
        floor, allowed = ctx.model.tolerance()
        evidence = numerics.evidence(ctx.model.precision, floor, allowed, adapter_vs_base=distance)
        evidence["adapter_logits_finite"] = numerics.finite(loaded)
        return Measurement(distance, f"> {allowed:.3g}", evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        ev, distance = measurement.evidence, measurement.observed
        if not ev["adapter_logits_finite"] or not math.isfinite(distance):
            return "fail", (
                "the adapter is applied but its logits are not finite (NaN/inf): the adapter "
                "tensors hold non-finite values"
            )
        if distance > ev["allowed"]:
            return "pass", (
                f"the adapter changes the logits (relative change {distance:.3g}, "
                f"noise allowed {ev['allowed']:.2g})"
            )
        return "fail", (
            f"logits with the adapter are the base model's to within noise (relative change "
            f"{distance:.3g} <= {ev['allowed']:.2g}): it is not applied"
        )
