"""What a correct LoRA setup must look like, derived without calling `linear_to_lora_layers`.

Deriving the numbers from the converter under test would make every count check pass by
construction. Instead they come from the model config (for the Llama/Qwen family, whose
projection sizes follow from hidden size, heads, kv-heads and intermediate size) or from
a walk of the *unconverted* model's modules, plus the documented rules of mlx-lm's
converter: the last `num_layers` blocks; `keys`, or every Linear/Embedding of a block;
a mixture-of-experts SwitchLinear gets one (lora_a, lora_b) pair stacked over its experts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lora_harness.core.errors import InputError
from lora_harness.core.validation import did_you_mean
from lora_harness.lora.lora_config import LoRAConfig

ADAPTER_LEAVES = ("lora_a", "lora_b")
DORA_LEAF = "m"

# Model types whose block layout follows from the config alone (mlx-lm remaps mistral to llama).
_CONFIG_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")

# Names accepted by `--expect NAME=VALUE`.
PINNABLE = {
    "lora_layers": "LoRA modules after conversion",
    "trainable_arrays": "arrays in model.trainable_parameters()",
    "trainable_parameters": "scalars in model.trainable_parameters()",
    "voice_score": "voice score baseline the trained model must keep",
}


@dataclass(frozen=True)
class Projection:
    """One module that must become a LoRA module: its block, key and logical sizes."""

    block: int
    key: str
    in_dims: int
    out_dims: int
    experts: int = 0  # > 0 for a SwitchLinear: its adapter is stacked over the experts


@dataclass
class Expectations:
    projections: list[Projection]
    layers_prefix: str
    use_dora: bool
    rank: int
    derived_from: str
    pinned: dict[str, float] = field(default_factory=dict)

    def derived(self) -> dict[str, int]:
        arrays_per_module = 3 if self.use_dora else 2
        scalars = sum(
            self.rank * (p.in_dims + p.out_dims) * max(p.experts, 1)
            + (p.out_dims if self.use_dora else 0)
            for p in self.projections
        )
        return {
            "lora_layers": len(self.projections),
            "trainable_arrays": arrays_per_module * len(self.projections),
            "trainable_parameters": scalars,
        }

    def value(self, name: str):
        """The expected value of `name`: a pinned value wins over the derived one."""
        if name in self.pinned:
            return self.pinned[name]
        return self.derived().get(name)

    def trainable_keys(self) -> set[str]:
        leaves = ADAPTER_LEAVES + ((DORA_LEAF,) if self.use_dora else ())
        return {
            f"{self.layers_prefix}{p.block}.{p.key}.{leaf}"
            for p in self.projections
            for leaf in leaves
        }

    def adapter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every tensor the adapter file must hold."""
        shapes = {}
        for p in self.projections:
            stem = f"{self.layers_prefix}{p.block}.{p.key}"
            if p.experts:  # mlx-lm's LoRASwitchLinear layout
                shapes[f"{stem}.lora_a"] = (p.experts, self.rank, p.in_dims)
                shapes[f"{stem}.lora_b"] = (p.experts, p.out_dims, self.rank)
                continue
            shapes[f"{stem}.lora_a"] = (p.in_dims, self.rank)
            shapes[f"{stem}.lora_b"] = (self.rank, p.out_dims)
            if self.use_dora:
                shapes[f"{stem}.m"] = (p.out_dims,)
        return shapes

    def to_dict(self) -> dict:
        values = {name: self.value(name) for name in self.derived()}
        values.update(self.pinned)
        return {
            "values": values,
            "derived": self.derived(),
            "pinned": dict(self.pinned),
            "derived_from": self.derived_from,
        }


def derive(config: dict, base_model, lora: LoRAConfig, pinned: dict | None = None) -> Expectations:
    """Expectations for `lora` applied to `base_model` (not yet converted) described by `config`."""
    blocks = list(base_model.layers)
    n_blocks = len(blocks)
    if lora.num_layers > n_blocks:
        raise InputError(
            f"--num-layers {lora.num_layers} is larger than the model's {n_blocks} blocks; "
            f"use at most {n_blocks} or -1 for all"
        )
    if config.get("model_type") in _CONFIG_FAMILIES:
        shapes_per_block, source = [_family_block_shapes(config)] * n_blocks, "config"
    else:
        shapes_per_block, source = [_walk_block(b) for b in blocks], "model-structure"
    keys = lora.keys
    if keys is None:
        keys = sorted({k for shapes in shapes_per_block for k in shapes})
    first = 0 if lora.num_layers == -1 else n_blocks - lora.num_layers
    projections = [
        Projection(i, key, *shapes_per_block[i][key])
        for i in range(first, n_blocks)
        for key in keys
        if key in shapes_per_block[i]
    ]
    if lora.use_dora and any(p.experts for p in projections):
        raise InputError(
            "DoRA does not support mixture-of-experts (SwitchLinear) layers in mlx-lm; use "
            "--fine-tune-type lora, or --keys without the expert projections"
        )
    if not projections:
        available = sorted({k for s in shapes_per_block for k in s})
        raise InputError(
            f"--keys {','.join(keys)} matched no module, so 0 LoRA layers would train; "
            f"use keys from: {','.join(available)}"
        )
    return Expectations(
        projections=projections,
        layers_prefix=layers_prefix(base_model),
        use_dora=lora.use_dora,
        rank=lora.rank,
        derived_from=source,
        pinned=dict(pinned or {}),
    )


def derivable_from_config(config: dict) -> bool:
    """True when `config` alone gives every block's projection sizes (no model walk needed)."""
    return config.get("model_type") in _CONFIG_FAMILIES


def layers_prefix(model) -> str:
    """The dotted path of `model.layers` inside the parameter tree, e.g. 'model.layers.'."""
    first_block = model.layers[0]
    for name, module in model.named_modules():
        if module is first_block:
            return name[: -len("0")]
    raise InputError("the model's blocks are not reachable from its module tree")


def parse_pins(items: list[str]) -> dict[str, float]:
    """`['trainable_arrays=392']` -> {'trainable_arrays': 392}."""
    pins: dict[str, float] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name or not raw.strip():
            raise InputError(
                f"--expect {item!r} is not NAME=VALUE; e.g. --expect trainable_arrays=392"
            )
        if name not in PINNABLE:
            raise InputError(f"--expect {name}: unknown name; {did_you_mean(name, PINNABLE)}")
        try:
            number = float(raw)
        except ValueError:
            raise InputError(
                f"--expect {item!r}: {raw!r} is not a number; e.g. --expect {name}=392"
            )
        if not math.isfinite(number) or number < 0:
            raise InputError(
                f"--expect {item!r}: pin a finite count >= 0, e.g. --expect {name}=392"
            )
        pins[name] = int(number) if number.is_integer() else number
    return pins


def _family_block_shapes(config: dict) -> dict[str, tuple[int, int]]:
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    intermediate = config["intermediate_size"]
    return {
        "self_attn.q_proj": (hidden, heads * head_dim),
        "self_attn.k_proj": (hidden, kv_heads * head_dim),
        "self_attn.v_proj": (hidden, kv_heads * head_dim),
        "self_attn.o_proj": (heads * head_dim, hidden),
        "mlp.gate_proj": (hidden, intermediate),
        "mlp.up_proj": (hidden, intermediate),
        "mlp.down_proj": (intermediate, hidden),
    }


def _walk_block(block) -> dict[str, tuple[int, ...]]:
    """key -> (in_dims, out_dims[, experts]) of every module mlx-lm's converter would adapt."""
    import mlx.nn as nn
    from mlx_lm.models.switch_layers import QuantizedSwitchLinear, SwitchLinear

    shapes = {}
    for name, module in block.named_modules():
        if isinstance(module, (SwitchLinear, QuantizedSwitchLinear)):
            experts, out_dims, stored = module.weight.shape
            in_dims = stored * 32 // module.bits if hasattr(module, "bits") else stored
            shapes[name] = (in_dims, out_dims, experts)
        elif isinstance(module, nn.QuantizedLinear):
            out_dims, packed = module.weight.shape
            shapes[name] = (packed * 32 // module.bits, out_dims)
        elif isinstance(module, nn.Linear):
            out_dims, in_dims = module.weight.shape
            shapes[name] = (in_dims, out_dims)
        elif isinstance(module, nn.Embedding):
            shapes[name] = tuple(module.weight.shape)
    return shapes
