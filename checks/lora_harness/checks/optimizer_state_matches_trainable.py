"""The optimizer holds state only for the trainable adapter arrays."""

from lora_harness.core import keysets
from lora_harness.core.checking import Check, Measurement, register


@register
class OptimizerStateMatchesTrainable(Check):
    name = "optimizer_state_matches_trainable"
    summary = "optimizer state exists exactly for the trainable adapter arrays"
    symptom = (
        "optimizer.init(model.parameters()) (or a whole-model gradient) makes Adam keep m/v for "
        "every base weight: memory triples and frozen weights may be moved by the update."
    )
    remedy = "Initialise with optimizer.init(model.trainable_parameters()) after unfreezing the adapters."
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "legacy_qv_keys",
        "partial_num_layers",
        "optimizer_init_all_parameters",
        "mx_value_and_grad",
        "lora_a_frozen",
        "destructive_full_model_lr",
    )

    def measure(self, ctx) -> Measurement:
        keys = ctx.training.optimizer_state_keys
        return keysets.compare(keys, ctx.model.expectations.trainable_keys())

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        return keysets.judge(
            measurement, "optimizer state", "not adapters", "adapters without state"
        )
