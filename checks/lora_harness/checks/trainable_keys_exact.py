"""The set of trainable names is exactly the expected adapter leaves, nothing else."""

from lora_harness.core import keysets
from lora_harness.core.checking import Check, Measurement, register


@register
class TrainableKeysExact(Check):
    name = "trainable_keys_exact"
    summary = "trainable names are exactly the expected *.lora_a / *.lora_b (and *.m for DoRA)"
    symptom = (
        "Base weights (e.g. *.linear.weight, embeddings, norms) are trainable and drift, or "
        "some adapters are frozen and never learn; the counts can still look plausible."
    )
    remedy = (
        "Call model.freeze() before linear_to_lora_layers and unfreeze with "
        "keys=['lora_a','lora_b'] (plus 'm' for DoRA), strict=False; never unfreeze() bare."
    )
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "legacy_qv_keys",
        "partial_num_layers",
        "lora_a_frozen",
        "destructive_full_model_lr",
    )

    def measure(self, ctx) -> Measurement:
        return keysets.compare(ctx.model.trainable_keys(), ctx.model.expectations.trainable_keys())

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        return keysets.judge(
            measurement, "trainable parameters", "unexpected trainable", "expected but frozen"
        )
