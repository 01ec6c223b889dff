"""How many arrays are trainable, counted over the flattened tree and by the trainer."""

from mlx.utils import tree_flatten

from lora_harness.core.checking import Check, Measurement, register


@register
class TrainableArrayCount(Check):
    name = "trainable_array_count"
    summary = "arrays in model.trainable_parameters() equal 2 per LoRA module (3 with DoRA)"
    symptom = (
        "The whole model trains instead of the adapters (unfreeze() without keys, a hand-built "
        "LoRALinear after freeze()), or the trainer reports a wrong count because it counted "
        "the top level of the parameter dict instead of the flattened tree."
    )
    remedy = (
        "model.freeze(); linear_to_lora_layers(...); model.unfreeze(keys=['lora_a','lora_b'], "
        "strict=False); count with len(tree_flatten(model.trainable_parameters()))."
    )
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "legacy_qv_keys",
        "partial_num_layers",
        "count_without_tree_flatten",
        "lora_a_frozen",
        "destructive_full_model_lr",
    )

    def measure(self, ctx) -> Measurement:
        model = ctx.model.lora_model
        observed = len(tree_flatten(model.trainable_parameters()))
        reported = ctx.recipe.count_trainable(model)
        evidence = {"trainer_reported": reported}
        if "trainable_arrays" in ctx.model.expectations.pinned:
            evidence["pinned"] = True
        return Measurement(observed, ctx.model.expectations.value("trainable_arrays"), evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        reported = measurement.evidence["trainer_reported"]
        if measurement.observed != measurement.expected:
            return (
                "fail",
                f"{measurement.observed} trainable arrays, expected {measurement.expected}",
            )
        if reported != measurement.observed:
            return "fail", (
                f"the trainer reports {reported} trainable arrays but the flattened tree holds "
                f"{measurement.observed}"
            )
        return "pass", f"{measurement.observed} trainable arrays as expected"
