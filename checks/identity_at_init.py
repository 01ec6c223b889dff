"""Right after conversion the LoRA model must compute exactly what the base model computes."""

from lora_harness.core.checking import Check, Measurement, logit_difference, register


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
    # DoRA rescales by m/||W||, which is 1 only up to float rounding.
    relative_tolerance = 1e-5

    def measure(self, ctx) -> Measurement:
        difference, relative = logit_difference(ctx.model.init_logits, ctx.model.base_logits)
        return Measurement(
            observed=relative,
            expected=0.0,
            evidence={"max_abs_difference": difference, "tolerance": self.relative_tolerance},
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.observed <= self.relative_tolerance:
            return "pass", f"max relative logit difference {measurement.observed:.2e} at init"
        return "fail", (
            f"LoRA model differs from the base before training: max relative logit difference "
            f"{measurement.observed:.3g} (tolerance {self.relative_tolerance:g})"
        )
