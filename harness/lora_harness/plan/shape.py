"""What a plan needs to know about a model, read without loading a single weight.

The architecture is built from config.json by mlx-lm's own classes, lazily: MLX allocates
nothing until an array is evaluated, so a 7B model's parameter shapes, and the LoRA layers
`linear_to_lora_layers` would add, cost milliseconds. A model folder's weight bytes come
from its safetensors headers (exact for any format, quantised included); other sources
count the lazy parameters in the dtype and quantisation they would be loaded in.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from lora_harness.core.errors import InputError
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models import random_weights
from lora_harness.models.sources import ModelSource, build_from_config

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_SAFETENSORS_FLOATS = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
# Inputs several adapted projections read: mx.compile merges their identical float32 casts.
SHARED_INPUTS = {
    "q_proj": "attention input",
    "k_proj": "attention input",
    "v_proj": "attention input",
    "gate_proj": "mlp input",
    "up_proj": "mlp input",
}


@dataclass(frozen=True)
class Quantization:
    bits: int
    group_size: int
    mode: str = "affine"

    def describe(self) -> str:
        return f"{self.mode} {self.bits}-bit, group {self.group_size}"


@dataclass
class ModelShape:
    """Dimensions, weight bytes by format, and the LoRA modules of each adapted block."""

    spec: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layers: int
    dtype: str  # the activations' dtype: the float dtype of the weights
    weight_bytes: dict = field(default_factory=dict)  # format -> bytes
    quantization: Quantization | None = None
    lora_parameters: int = 0  # trainable elements (float32, as mlx-lm creates them)
    adapted_layers: int = 0
    lora_inputs: list = field(default_factory=list)  # per adapted block: (name, width) casts
    lora_modules_per_layer: int = 0
    rank: int = 8

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def weights_total(self) -> int:
        return sum(self.weight_bytes.values())

    def with_lora(self, num_layers: int, rank: int) -> ModelShape:
        """The same model with LoRA on `num_layers` blocks at `rank`, without rebuilding it.

        Exact for LoRA on identical blocks: each adapted projection holds rank x (in + out).
        """
        per_block_per_rank = self.lora_parameters / max(self.adapted_layers, 1) / self.rank
        layers = self.layers if num_layers in (-1, None) else min(num_layers, self.layers)
        changed = dataclasses.replace(self, rank=rank, adapted_layers=layers)
        changed.lora_parameters = round(per_block_per_rank * rank * layers)
        return changed

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "hidden_size": self.hidden,
            "intermediate_size": self.intermediate,
            "attention_heads": self.heads,
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab,
            "layers": self.layers,
            "dtype": self.dtype,
            "quantization": self.quantization.describe() if self.quantization else None,
            "weight_bytes": dict(self.weight_bytes),
            "lora_parameters": self.lora_parameters,
            "adapted_layers": self.adapted_layers,
        }


def _text_config(config: dict) -> dict:
    return {**config, **config["text_config"]} if "text_config" in config else config


def _dims(config: dict) -> dict:
    text = _text_config(config)
    try:
        hidden, heads = text["hidden_size"], text["num_attention_heads"]
        return {
            "hidden": hidden,
            "intermediate": text["intermediate_size"],
            "heads": heads,
            "kv_heads": text.get("num_key_value_heads") or heads,
            "head_dim": text.get("head_dim") or hidden // heads,
            "vocab": text["vocab_size"],
            "layers": text["num_hidden_layers"],
        }
    except KeyError as missing:
        raise InputError(
            f"config.json has no {missing}; plan needs a decoder's sizes (hidden_size, "
            "intermediate_size, num_attention_heads, vocab_size, num_hidden_layers)"
        )


def quantization_of(config: dict) -> Quantization | None:
    q = config.get("quantization") or config.get("quantization_config")
    if not isinstance(q, dict) or "bits" not in q:
        return None
    return Quantization(int(q["bits"]), int(q.get("group_size", 64)), q.get("mode", "affine"))


def read(
    source: ModelSource,
    lora: LoRAConfig,
    quantize: Quantization | None = None,
    dtype: str | None = None,
) -> ModelShape:
    """The plan's view of `source` with `lora` applied; `quantize` asks "what if quantised"."""
    config = source.config
    folder_bytes = _folder_weight_bytes(source) if quantize is None and dtype is None else None
    dtype = dtype or _float_dtype(source, folder_bytes)
    quant = quantize or quantization_of(config)
    model = build_from_config(config)
    if quantize is not None:  # as mlx_lm.convert -q would
        nn.quantize(model, group_size=quant.group_size, bits=quant.bits, mode=quant.mode)
    elif quant is not None:
        _quantize_as_loaded(model, config, quant)
    shape = ModelShape(spec=source.spec, dtype=dtype, quantization=quant, **_dims(config))
    shape.weight_bytes = folder_bytes or _lazy_weight_bytes(model, dtype)
    _adapt(model, lora, shape)
    return shape


def _quantize_as_loaded(model, config: dict, quant: Quantization) -> None:
    """As mlx_lm.load does: only the layers whose weights the folder holds quantised."""
    per_layer = config.get("quantization") or {}

    def predicate(path, module):
        if path in per_layer and isinstance(per_layer[path], dict | bool):
            return per_layer[path]
        return hasattr(module, "to_quantized") and module.weight.shape[-1] % quant.group_size == 0

    nn.quantize(
        model,
        group_size=quant.group_size,
        bits=quant.bits,
        mode=quant.mode,
        class_predicate=predicate,
    )


def _adapt(model, lora: LoRAConfig, shape: ModelShape) -> None:
    """LoRA applied to the lazy model, exactly as the trainer applies it; counts its parts."""
    from lora_harness.lora import trainer
    from lora_harness.lora.recipe import adapter_module_names

    try:
        trainer.prepare_lora_model(model, lora)
    except (ValueError, KeyError) as error:
        raise InputError(f"LoRA cannot be applied to {shape.spec}: {error}")
    shape.lora_parameters = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    shape.rank = lora.rank
    by_layer: dict[int, list[str]] = {}
    for name in adapter_module_names(model):
        parts = name.split(".")
        if "layers" in parts:
            index = int(parts[parts.index("layers") + 1])
            by_layer.setdefault(index, []).append(name)
    shape.adapted_layers = len(by_layer)
    if not by_layer:
        return
    top = max(by_layer)
    modules = by_layer[top]
    shape.lora_modules_per_layer = len(modules)
    casts: dict[str, int] = {}
    for name in modules:
        module = model
        for part in name.split("."):
            module = module[int(part)] if part.isdigit() else getattr(module, part)
        leaf = name.rsplit(".", 1)[-1]
        casts[SHARED_INPUTS.get(leaf, leaf)] = module.lora_a.shape[0]
    shape.lora_inputs = sorted(casts.items())


def _lazy_weight_bytes(model, dtype: str) -> dict:
    """Bytes of the lazy parameters in the dtype they load in; quantised parts apart."""
    float_bytes = DTYPE_BYTES[dtype]
    totals = {"float": 0, "quantized": 0, "scales_and_biases": 0}
    for name, value in tree_flatten(model.parameters()):
        leaf = name.rsplit(".", 1)[-1]
        if value.dtype in (mx.uint32, mx.uint8) and leaf == "weight":
            totals["quantized"] += value.nbytes
        elif leaf in ("scales", "biases"):
            item = value.itemsize if value.dtype == mx.uint8 else float_bytes
            totals["scales_and_biases"] += value.size * item
        else:
            totals["float"] += value.size * float_bytes
    return {k: v for k, v in totals.items() if v}


def _folder_weight_bytes(source: ModelSource) -> dict | None:
    """Exact bytes from a model folder's safetensors headers (no tensor is read)."""
    if source.path is None or not Path(source.path).is_dir():
        return None
    files = sorted(Path(source.path).glob("model*.safetensors"))
    if not files:
        return None
    totals = {"float": 0, "quantized": 0, "scales_and_biases": 0}
    for path in files:
        for name, info in _safetensors_header(path).items():
            if name == "__metadata__":
                continue
            start, stop = info["data_offsets"]
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("scales", "biases"):
                totals["scales_and_biases"] += stop - start
            elif info["dtype"] in _SAFETENSORS_FLOATS:
                totals["float"] += stop - start
            else:
                totals["quantized"] += stop - start
    return {k: v for k, v in totals.items() if v}


def _safetensors_header(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError("header too long")
            return json.loads(handle.read(length))
    except (OSError, ValueError, struct.error) as error:
        raise InputError(
            f"{path} is not a readable safetensors file ({error}); re-download or re-convert it"
        )


def _float_dtype(source: ModelSource, folder_bytes: dict | None) -> str:
    """The dtype activations run in: a random model's draw, else the weights' float dtype."""
    if source.random_weights and source.dtype:
        return source.dtype
    if folder_bytes is not None:
        counts: dict[str, int] = {}
        for path in sorted(Path(source.path).glob("model*.safetensors")):
            for name, info in _safetensors_header(path).items():
                if name != "__metadata__" and info["dtype"] in _SAFETENSORS_FLOATS:
                    kind = _SAFETENSORS_FLOATS[info["dtype"]]
                    counts[kind] = counts.get(kind, 0) + 1
        if counts:
            return max(counts, key=counts.get)
    name = random_weights.dtype_name(source.config)
    return name if name in DTYPE_BYTES else "bfloat16"
