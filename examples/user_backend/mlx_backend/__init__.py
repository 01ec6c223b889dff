"""A small MLX LoRA backend in the seed's style, with its bugs behind flags.

    mlx_adapter_manager.py  LoRA conversion with linear_to_lora_layers, selective unfreeze
    mlx_sft_trainer.py      an SFT trainer class with its own compiled step
    mlx_dpo_trainer.py      a DPO trainer class (reference = adapter disabled)
    lora_gate.py            the glue: this backend's steps as a lora-harness recipe

Every bug of the seed's "What Doesn't Work" list can be planted with `bugs={...}`:
    manual_from_base        LoRALinear.from_base() by hand on the modules the author listed
    hand_built_lora         LoRALinear(...) built by hand, base weights copied into its .linear
    unfreeze_without_keys   model.unfreeze() with no keys
    skip_optimizer_init     optimizer.init() never called
    mx_value_and_grad       mx.value_and_grad over model.parameters() instead of nn.value_and_grad
    top_level_count         len(model.trainable_parameters()) instead of the flattened tree
Nothing here imports lora_harness: it is the user's code, gated from the outside.
"""

BUGS = (
    "manual_from_base",
    "hand_built_lora",
    "unfreeze_without_keys",
    "skip_optimizer_init",
    "mx_value_and_grad",
    "top_level_count",
)
