"""Every base weight is bit-identical after training steps (on-device fingerprints)."""

from lora_harness.core import fingerprint
from lora_harness.core.checking import Check, Measurement, register


@register
class FrozenBaseUnchanged(Check):
    name = "frozen_base_unchanged"
    summary = "base weights are bit-identical after >= 2 training steps (fingerprinted, not copied)"
    symptom = (
        "Base weights drift during LoRA training: the model is corrupted, generation collapses "
        "into <|endoftext|> spam and the voice score falls to 0.00."
    )
    remedy = (
        "Freeze the base before conversion, unfreeze only adapter keys, build the step with "
        "nn.value_and_grad and init the optimizer on model.trainable_parameters()."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "mx_value_and_grad",
        "destructive_full_model_lr",
        "dpo_reference_trained",
    )

    def measure(self, ctx) -> Measurement:
        outcome = ctx.training
        moved = fingerprint.changed(outcome.base_before, outcome.base_after)
        evidence = {
            "tensors_fingerprinted": len(outcome.base_before),
            "changed": moved[:5],
            "steps": len(outcome.metrics),
        }
        return Measurement(observed=len(moved), expected=0, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        total = measurement.evidence["tensors_fingerprinted"]
        if measurement.observed == 0:
            return (
                "pass",
                f"all {total} base tensors bit-identical after {measurement.evidence['steps']} steps",
            )
        return "fail", (
            f"{measurement.observed} of {total} base tensors changed during training "
            f"(e.g. {measurement.evidence['changed'][0]})"
        )
