"""Right after conversion the LoRA model must compute exactly what the base model computes.

Criterion: d(LoRA model at init, base) <= 4 floor + 8 u (harness/core/numerics.py): floor is
the base's logits computed batched and row by row, u the unit roundoff of the model's
dtype. LoRA's lora_b = 0 gives exactly 0; DoRA rescales by m/||W||, 1 only up to rounding.
"""

from lora_harness.core import numerics
from lora_harness.core.checking import Check, Measurement, register


@register
class IdentityAtInit(Check):
    name = "identity_at_init"
    summary = "before training, LoRA model logits equal the base model's (lora_b starts at zero)"
    symptom = (
        "The adapter perturbs the model before it has learned anything (lora_b not zero, a "
        "hand-rolled LoRA layer, wrong DoRA magnitude): generation degrades from step 0."
    )
    remedy = (
        "Use linear_to_lora_layers / LoRALinear.from_base, which start lora_b at zero so the "
        "adapted model is the base model until training moves it."
    )
    requires = ("weights",)
    catches = ("nonzero_lora_b_init",)

    def measure(self, ctx) -> Measurement:
        part = ctx.model
        distance = numerics.relative_distance(part.init_logits, part.base_logits)
        floor, allowed = part.tolerance()
        evidence = numerics.evidence(part.precision, floor, allowed, init_vs_base=distance)
        return Measurement(observed=distance, expected=allowed, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        distance, allowed = measurement.observed, measurement.expected
        if numerics.within(distance, allowed):
            return "pass", (
                f"max relative logit difference {distance:.2e} at init (allowed {allowed:.1e})"
            )
        return "fail", (
            f"LoRA model differs from the base before training: max relative logit difference "
            f"{distance:.3g} (allowed {allowed:.3g} for {measurement.evidence['precision']['label']})"
        )
