"""Every adapter tensor moved during training."""

from lora_harness.core import fingerprint
from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class AdaptersChanged(Check):
    name = "adapters_changed"
    summary = "every LoRA tensor changed after >= 2 steps (lora_a gets no gradient on step 1)"
    symptom = (
        "The adapters never learn (frozen adapters, an optimizer that updates nothing, a zero "
        "learning rate): training 'succeeds' and the saved adapter is the initial one."
    )
    remedy = (
        "Make sure lora_a/lora_b are trainable, the loss reaches them (nn.value_and_grad over "
        "the model) and optimizer.update(model, grads) runs every step with a nonzero rate."
    )
    requires = ("weights",)
    catches = (
        "lora_a_frozen",
        "huge_scale",
    )

    def measure(self, ctx) -> Measurement:
        if ctx.lora.iters < 2:
            raise SkipCheck(
                "needs --iters >= 2: lora_b starts at zero, so lora_a only moves on step 2"
            )
        outcome = ctx.training
        moved = fingerprint.changed(outcome.adapter_before, outcome.adapter_after)
        still = sorted(set(outcome.adapter_before) - set(moved))
        evidence = {"unchanged": still[:5], "steps": len(outcome.metrics)}
        return Measurement(
            observed=len(moved), expected=len(outcome.adapter_before), evidence=evidence
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.expected == 0:
            return "fail", "the model holds no adapter tensors"
        if measurement.observed == measurement.expected:
            return "pass", f"all {measurement.expected} adapter tensors changed"
        return "fail", (
            f"only {measurement.observed} of {measurement.expected} adapter tensors changed "
            f"(unchanged e.g. {measurement.evidence['unchanged'][0]})"
        )
