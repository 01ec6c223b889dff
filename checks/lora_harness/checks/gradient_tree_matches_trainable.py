"""The gradient the training step computes covers exactly the trainable adapter arrays."""

from lora_harness.core import keysets
from lora_harness.core.checking import Check, Measurement, register


@register
class GradientTreeMatchesTrainable(Check):
    name = "gradient_tree_matches_trainable"
    summary = "the step's gradient tree has exactly the trainable adapter names as leaves"
    symptom = (
        "mx.value_and_grad(loss)(model, ...) differentiates every array of the model, so the "
        "optimizer updates frozen base weights and each step costs ~3x a forward pass."
    )
    remedy = (
        "Build the step with nn.value_and_grad(model, loss_fn), which differentiates "
        "model.trainable_parameters() only."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "legacy_qv_keys",
        "partial_num_layers",
        "mx_value_and_grad",
        "lora_a_frozen",
        "destructive_full_model_lr",
    )

    def measure(self, ctx) -> Measurement:
        return keysets.compare(ctx.training.gradient_keys, ctx.model.expectations.trainable_keys())

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        return keysets.judge(
            measurement, "gradient leaves", "not adapters", "adapters without gradient"
        )
