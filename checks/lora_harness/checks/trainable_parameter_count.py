"""How many scalars are trainable, against sum of r*(in+out) over the adapted projections."""

from mlx.utils import tree_flatten

from lora_harness.core.checking import Check, Measurement, register


@register
class TrainableParameterCount(Check):
    name = "trainable_parameter_count"
    summary = (
        "trainable scalars equal the sum of r*(in+out) (+out for DoRA) over adapted projections"
    )
    symptom = (
        "Millions of base weights train alongside the adapters, or the rank/keys differ from "
        "what was asked (e.g. a formula assuming square projections misses GQA's smaller k/v)."
    )
    remedy = (
        "Freeze the base before converting, unfreeze only lora_a/lora_b, and check --rank and "
        "--keys; compare with the derived value in the report's expectations."
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
        observed = sum(a.size for _, a in tree_flatten(ctx.model.lora_model.trainable_parameters()))
        evidence = {"derived_from": ctx.model.expectations.derived_from}
        if "trainable_parameters" in ctx.model.expectations.pinned:
            evidence["pinned"] = True
        return Measurement(observed, ctx.model.expectations.value("trainable_parameters"), evidence)
