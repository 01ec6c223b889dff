"""LoRA adapter operations: freeze, convert with linear_to_lora_layers, unfreeze the adapters."""

from __future__ import annotations

from dataclasses import dataclass, field

import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.utils import linear_to_lora_layers

# What a hand-written conversion typically listed (mlx-lm's old q/v default).
HAND_PICKED = ("self_attn.q_proj", "self_attn.v_proj")


@dataclass
class MLXAdapterManager:
    rank: int = 8
    scale: float = 20.0
    dropout: float = 0.0
    num_layers: int = -1
    keys: list[str] | None = None
    fine_tune_type: str = "lora"
    bugs: frozenset = field(default_factory=frozenset)

    def apply_lora(self, model: nn.Module) -> nn.Module:
        self.freeze(model)
        self.convert(model)
        self.unfreeze(model)
        return model

    def freeze(self, model: nn.Module) -> None:
        model.freeze()

    def convert(self, model: nn.Module) -> None:
        if "manual_from_base" in self.bugs:
            return self._convert_by_hand(model)
        if "hand_built_lora" in self.bugs:
            return self._build_lora_layers(model)
        parameters = {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}
        if self.keys is not None:
            parameters["keys"] = list(self.keys)
        depth = len(model.layers) if self.num_layers == -1 else self.num_layers
        linear_to_lora_layers(model, depth, parameters, use_dora=self.fine_tune_type == "dora")

    def _convert_by_hand(self, model: nn.Module) -> None:
        for block in model.layers:
            for key in HAND_PICKED:
                owner_name, _, leaf = key.rpartition(".")
                owner = block
                for part in owner_name.split("."):
                    owner = getattr(owner, part)
                base = getattr(owner, leaf)
                wrapped = LoRALinear.from_base(
                    base, r=self.rank, scale=self.scale, dropout=self.dropout
                )
                setattr(owner, leaf, wrapped)

    def _build_lora_layers(self, model: nn.Module) -> None:
        # A fresh LoRALinear with the base weights copied in: its own .linear is a new
        # module, created after freeze() ran, so nothing freezes the base weights in it.
        for block in model.layers:
            for name, module in list(block.named_modules()):
                if isinstance(module, nn.Linear):
                    out_dims, in_dims = module.weight.shape
                    wrapped = LoRALinear(
                        in_dims, out_dims, r=self.rank, scale=self.scale, bias="bias" in module
                    )
                    wrapped.linear.update(module.parameters())
                    block.update_modules(tree_unflatten([(name, wrapped)]))

    def unfreeze(self, model: nn.Module) -> None:
        if "unfreeze_without_keys" in self.bugs:
            model.unfreeze()
            return
        keys = ["lora_a", "lora_b"] + (["m"] if self.fine_tune_type == "dora" else [])
        model.unfreeze(keys=keys, strict=False)

    def count_trainable(self, model: nn.Module) -> int:
        """Trainable arrays, as the backend logs them ("392 for Qwen2.5-7B")."""
        if "top_level_count" in self.bugs:
            return len(model.trainable_parameters())
        return len(tree_flatten(model.trainable_parameters()))
