"""How many modules became LoRA modules, against the count derived from the config."""

from lora_harness.core.checking import Check, Measurement, register
from lora_harness.lora.recipe import adapter_module_names


@register
class LoRALayerCount(Check):
    name = "lora_layer_count"
    summary = "LoRA modules after conversion equal blocks adapted x keys present in a block"
    symptom = (
        "Too few layers adapted: the old q/v-only default keys, --num-layers 16 on a deeper "
        "model, or keys that match nothing; the adapter learns little and the voice never moves."
    )
    remedy = (
        "Convert with mlx_lm.tuner.utils.linear_to_lora_layers and check --num-layers "
        "(-1 = all blocks) and --keys; for Qwen2.5-7B rank 8 on all blocks expect 196."
    )
    catches = (
        "legacy_qv_keys",
        "partial_num_layers",
    )

    def measure(self, ctx) -> Measurement:
        names = adapter_module_names(ctx.model.lora_model)
        expected = ctx.model.expectations.value("lora_layers")
        evidence = {"derived_from": ctx.model.expectations.derived_from, "first_modules": names[:3]}
        if "lora_layers" in ctx.model.expectations.pinned:
            evidence["pinned"] = True
        return Measurement(observed=len(names), expected=expected, evidence=evidence)
