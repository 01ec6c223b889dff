"""The saved adapter, loaded back through mlx_lm.load, reproduces the trained model.

Criterion: d(reloaded, trained in memory) <= 4 floor + 8 u (harness/core/numerics.py): the
same weights computed again may differ only by the backend's noise and the dtype's rounding.
"""

from lora_harness.core import numerics
from lora_harness.core.checking import Check, Measurement, SkipCheck, register
from lora_harness.lora.adapters import rejected_message, rejection_guard


@register
class AdapterRoundtrip(Check):
    name = "adapter_roundtrip"
    summary = "save -> mlx_lm.load(model, adapter_path=...) gives the in-memory LoRA model's logits"
    symptom = (
        "The adapter you ship is not the one you trained: tensors saved under the wrong names, "
        "a config that rebuilds different layers, or weights silently skipped on load."
    )
    remedy = (
        "Save dict(tree_flatten(model.trainable_parameters())) to adapters.safetensors and write "
        "adapter_config.json with the fine_tune_type, num_layers and lora_parameters used."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "mx_value_and_grad",
        "lora_a_frozen",
        "zero_loss_tokens",
        "destructive_full_model_lr",
        "adapter_saved_not_applied",
        "adapter_config_without_scale",
    )

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        if ctx.adapter.given is not None:
            raise SkipCheck("doctor: there is no in-memory trained model to compare with")
        distance = numerics.relative_distance(ctx.adapter.loaded_logits, ctx.trained_logits)
        floor, allowed = ctx.model.tolerance()
        evidence = numerics.evidence(
            ctx.model.precision, floor, allowed, reloaded_vs_trained=distance
        )
        evidence["adapter_path"] = str(ctx.adapter.folder)
        return Measurement(distance, allowed, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        distance, allowed = measurement.observed, measurement.expected
        if numerics.within(distance, allowed):
            return "pass", (
                f"reloaded adapter matches (max relative difference {distance:.1e}, "
                f"allowed {allowed:.1e})"
            )
        return "fail", (
            f"reloaded adapter differs from the trained model: max relative difference "
            f"{distance:.3g} (allowed {allowed:.3g})"
        )
