"""The saved adapter, loaded back through mlx_lm.load, reproduces the trained model exactly."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, logit_difference, register
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
    relative_tolerance = 1e-5

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        if ctx.adapter.given is not None:
            raise SkipCheck("doctor: there is no in-memory trained model to compare with")
        difference, relative = logit_difference(ctx.adapter.loaded_logits, ctx.trained_logits)
        return Measurement(
            relative,
            0.0,
            {"max_abs_difference": difference, "adapter_path": str(ctx.adapter.folder)},
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        if measurement.observed <= self.relative_tolerance:
            return (
                "pass",
                f"reloaded adapter matches (max relative difference {measurement.observed:.1e})",
            )
        return (
            "fail",
            f"reloaded adapter differs from the trained model: max relative difference {measurement.observed:.3g}",
        )
