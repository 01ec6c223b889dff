"""`--model gguf:PATH[@bf16|@float32]`: a llama.cpp GGUF file as an mlx-lm model folder.

`mlx.core.load` reads GGUF files whose tensors are F32, F16, Q4_0, Q4_1 or Q8_0 (the
quantised ones straight into MLX's affine layout, group 32). This module turns one into
the folder `mlx_lm.load` reads, once, in the model cache:

- config.json from the GGUF metadata (Llama architecture);
- the weights under mlx-lm's names, quantisation kept, or dequantised with @bf16/@float32;
- the q/k rows un-permuted: llama.cpp's converter interleaves each head's rotary halves
  (for its own RoPE kernel); mlx-lm's Llama expects them as Hugging Face stores them.
  Without this the model still runs but its perplexity on English triples;
- tokenizer.json and tokenizer_config.json (models/gguf_tokenizer.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import build_once, staging_folder

# llama.cpp's LLAMA_FTYPE values (general.file_type): the ones mlx reads natively.
READABLE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0"}
OTHER_TYPES = {
    8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
    15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS",
    21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S",
    27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
    36: "TQ1_0", 37: "TQ2_0",
}  # fmt: skip
DTYPES = ("bf16", "float32")
ARCHITECTURES = ("llama",)
CONVERSION_VERSION = 1  # bump when the converted folder's bytes would change

LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def parse_spec(spec: str) -> tuple[Path, str | None]:
    """`gguf:PATH[@dtype]` -> (the file, the dtype to dequantise to or None to keep it)."""
    text = spec.split(":", 1)[1]
    path_text, _, dtype = text.rpartition("@")
    if not path_text or "/" in dtype:  # no @, or an @ inside the path itself
        path_text, dtype = text, ""
    if dtype and dtype not in DTYPES:
        known = " or ".join(f"@{d}" for d in DTYPES)
        raise InputError(f"--model {spec}: unknown format @{dtype}; use {known} or leave it out")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise InputError(f"--model {spec}: {path} is not a file; pass the path of a .gguf file")
    return path, dtype or None


def converted_path(gguf_file: Path, dtype: str | None = None) -> Path:
    """The cached mlx-lm folder for `gguf_file` (converted on first use, one process at a time)."""
    from lora_harness.models.fixture import cache_root

    digest = file_digest(gguf_file)
    folder = cache_root() / "gguf" / f"{digest[:16]}-{dtype or 'native'}-v{CONVERSION_VERSION}"
    build_once(folder, lambda: _convert_atomically(gguf_file, dtype, folder))
    return folder


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def read(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of a GGUF file mlx reads natively, or InputError in one line."""
    import mlx.core as mx

    try:
        tensors, metadata = mx.load(str(path), return_metadata=True)
    except (RuntimeError, ValueError, OSError) as exc:
        raise InputError(f"{path}: mlx cannot read it as GGUF ({str(exc).splitlines()[0]})")
    file_type = scalar(metadata, "general.file_type", 0)
    if file_type not in READABLE_TYPES:
        name = OTHER_TYPES.get(file_type, f"file type {file_type}")
        readable = ", ".join(READABLE_TYPES.values())
        raise InputError(
            f"{path} holds {name} tensors, which mlx cannot read natively (it reads {readable}); "
            "re-quantise it with llama.cpp's llama-quantize to Q8_0/Q4_0 or convert the original "
            "with mlx_lm.convert"
        )
    architecture = metadata.get("general.architecture")
    if architecture not in ARCHITECTURES:
        raise InputError(
            f"{path}: GGUF architecture {architecture!r} is not supported here (only "
            f"{', '.join(ARCHITECTURES)}); convert the original model with mlx_lm.convert"
        )
    return tensors, metadata


def scalar(metadata: dict, key: str, default=None):
    value = metadata.get(key)
    if value is None:
        return default
    return value.item() if hasattr(value, "item") else value


def config_from(metadata: dict, tensors: dict) -> dict:
    """mlx-lm's Llama config.json from the GGUF metadata."""
    arch = metadata["general.architecture"]

    def get(key, default=None):
        value = scalar(metadata, f"{arch}.{key}", default)
        if value is None:
            raise InputError(f"the GGUF metadata has no {arch}.{key}; the file is incomplete")
        return value

    heads = int(get("attention.head_count"))
    vocab = int(get("vocab_size", len(metadata.get("tokenizer.ggml.tokens", []))))
    config = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": int(get("embedding_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "intermediate_size": int(get("feed_forward_length")),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 2048)),
        "vocab_size": vocab,
        "tie_word_embeddings": "output.weight" not in tensors,
        "attention_bias": False,
        "mlp_bias": False,
    }
    for key in ("bos_token_id", "eos_token_id"):
        if (value := scalar(metadata, f"tokenizer.ggml.{key}")) is not None:
            config[key] = int(value)
    return config


def mlx_name(gguf_name: str) -> str:
    """blk.3.attn_q.scales -> model.layers.3.self_attn.q_proj.scales."""
    parts = gguf_name.split(".")
    if parts[0] == "blk" and len(parts) == 4 and parts[2] in LAYER_NAMES:
        return f"model.layers.{parts[1]}.{LAYER_NAMES[parts[2]]}.{parts[3]}"
    if len(parts) == 2 and parts[0] in TOP_NAMES:
        return f"{TOP_NAMES[parts[0]]}.{parts[1]}"
    raise InputError(f"GGUF tensor {gguf_name!r} has no place in mlx-lm's Llama model")


def unpermute(array, heads: int):
    """Undo llama.cpp's rotary row order for q/k (rows are output features, any layout).

    llama.cpp stores a head's rows as (pair, half) -> it wrote reshape(heads, 2, d/2) swapped
    to (heads, d/2, 2); this is the inverse."""
    rows = array.shape[0]
    shaped = array.reshape(heads, rows // heads // 2, 2, *array.shape[1:])
    return shaped.swapaxes(1, 2).reshape(array.shape)


def convert_weights(tensors: dict, config: dict, dtype: str | None) -> tuple[dict, dict | None]:
    """(mlx-lm weights, quantization config or None), q/k rows in Hugging Face's order."""
    import mlx.core as mx

    heads = {"attn_q": config["num_attention_heads"], "attn_k": config["num_key_value_heads"]}
    weights = {}
    for name, array in tensors.items():
        kind = name.split(".")[2] if name.startswith("blk.") else None
        if kind in heads:
            array = unpermute(array, heads[kind])
        weights[mlx_name(name)] = array
    quantization = _quantization_of(weights)
    if dtype is None:
        return weights, quantization
    target = {"bf16": mx.bfloat16, "float32": mx.float32}[dtype]
    return _dequantized(weights, quantization, target), None


def _quantization_of(weights: dict) -> dict | None:
    """mlx-lm's quantization config: group 32, bits from the packed width, per layer if mixed."""
    layers = {}
    for name, scales in weights.items():
        if not name.endswith(".scales"):
            continue
        module = name[: -len(".scales")]
        packed, groups = weights[f"{module}.weight"].shape[-1], scales.shape[-1]
        bits = packed // groups  # packed = in * bits / 32, groups = in / 32
        layers[module] = {"group_size": 32, "bits": bits}
    if not layers:
        return None
    # The most common spec is the file-wide default; ties go to the first layer's (not hash order).
    counts = Counter(json.dumps(q, sort_keys=True) for q in layers.values())
    quantization = json.loads(counts.most_common(1)[0][0])
    quantization.update({m: q for m, q in layers.items() if q != quantization})
    return quantization


def _dequantized(weights: dict, quantization: dict | None, target) -> dict:
    import mlx.core as mx

    out = {}
    for name, array in weights.items():
        module, _, leaf = name.rpartition(".")
        if leaf in ("scales", "biases") and f"{module}.scales" in weights:
            continue
        if leaf == "weight" and f"{module}.scales" in weights:
            spec = quantization.get(module, quantization)
            array = mx.dequantize(
                array,
                weights[f"{module}.scales"],
                weights[f"{module}.biases"],
                group_size=spec["group_size"],
                bits=spec["bits"],
            )
        out[name] = array.astype(target)
    return out


def convert(gguf_file: Path, dtype: str | None, folder: Path) -> None:
    """Write the mlx-lm folder for `gguf_file` into `folder` (which exists and is empty)."""
    import mlx.core as mx

    from lora_harness.models import gguf_tokenizer

    tensors, metadata = read(gguf_file)
    config = config_from(metadata, tensors)
    weights, quantization = convert_weights(tensors, config, dtype)
    if quantization:
        config["quantization"] = config["quantization_config"] = quantization
    config["torch_dtype"] = {"bf16": "bfloat16", "float32": "float32"}.get(dtype, "float16")
    mx.eval(weights)
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    eos_ids = gguf_tokenizer.write(metadata, folder)
    _write_json(folder / "generation_config.json", {"eos_token_id": eos_ids})
    _write_json(
        folder / "gguf_source.json",
        {"file": str(gguf_file), "sha256": file_digest(gguf_file), "dtype": dtype},
    )
    _write_json(folder / "config.json", config)  # last: build_once trusts a folder with it


def _convert_atomically(gguf_file: Path, dtype: str | None, folder: Path) -> None:
    print(
        f"lora-harness: converting {gguf_file.name} to an mlx-lm folder once "
        f"({dtype or 'quantisation kept'}); cached in {folder}",
        file=sys.stderr,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with staging_folder(folder) as staging:
        staging.chmod(0o755)
        convert(gguf_file, dtype, staging)
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise


def export(folder: Path, destination: Path) -> Path:
    """Copy a converted folder to `destination` for mlx_lm.lora, mlx_lm.generate and others."""
    destination.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        shutil.copy2(item, destination / item.name)
    return destination


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
