"""How many scalars are trainable, against sum of r*(in+out) over the adapted projections."""

from mlx.utils import tree_flatten

from harness.checking import Check, Measurement, register


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

    def measure(self, ctx) -> Measurement:
        observed = sum(a.size for _, a in tree_flatten(ctx.lora_model.trainable_parameters()))
        evidence = {"derived_from": ctx.expectations.derived_from}
        if "trainable_parameters" in ctx.expectations.pinned:
            evidence["pinned"] = True
        return Measurement(observed, ctx.expectations.value("trainable_parameters"), evidence)
