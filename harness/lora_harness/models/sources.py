"""Resolve `--model` into something that can build a fresh model (and tokenizer).

Forms: `fixture:<name>` (built here), `shape:<name|path/config.json>` (structure only),
`gguf:<file.gguf>[@bf16|@float32]` and `real:<name>[@...]` (a llama.cpp file converted once
into the cache; models/gguf.py, models/real.py),
`random:<name|path/config.json>[@dtype]` (the real shape with random weights and the
fixture's tokenizer), a local mlx-lm model folder, or a Hugging Face hub id (through
`mlx_lm.load`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.validation import Rule, check, read_text
from lora_harness.models import fixture, random_weights, shapes

DEFAULT_MODEL = "fixture:tiny"


@dataclass
class ModelSource:
    """A resolved `--model`: its config, and how to build a model from it."""

    spec: str
    kind: str  # fixture | local | hub | shape | random | gguf
    config: dict
    path: Path | None = None
    dtype: str | None = None  # random: the dtype its weights are drawn in
    seed: int = 0

    @property
    def random_weights(self) -> bool:
        """Weights with the real shape but no training: nothing to learn from its text."""
        return self.kind == "random"

    @property
    def has_weights(self) -> bool:
        return self.kind != "shape"

    def load(self):
        """A fresh (model, tokenizer); tokenizer is None for shape-only models."""
        if self.kind == "shape":
            return build_from_config(self.config), None
        if self.kind == "random":
            return self._load_random()
        import mlx_lm

        check_model_folder(self.path)
        try:
            return mlx_lm.load(str(self.path))
        except FileNotFoundError:
            raise InputError(
                f"{self.path} has no model*.safetensors; convert the model with mlx_lm.convert first"
            )
        except (ValueError, RuntimeError, OSError, KeyError, IndexError) as exc:
            raise InputError(
                f"mlx-lm cannot load {self.path}: {summary(exc)}; re-download or re-convert "
                "the model (mlx_lm.convert)"
            )

    def _load_random(self):
        model = build_from_config(self.config)
        random_weights.randomize(model, random_weights.DTYPES[self.dtype], self.seed)
        model.eval()
        return model, self.tokenizer()

    def tokenizer(self):
        """The tokenizer alone: a random model's needs no 15 GB model built first."""
        if self.kind != "random":
            return self.load()[1]
        from mlx_lm.utils import load_tokenizer

        return load_tokenizer(fixture.fixture_path("tiny"))

    def describe(self) -> dict:
        return {
            "spec": self.spec,
            "kind": self.kind,
            "path": str(self.path) if self.path else None,
            "model_type": self.config.get("model_type"),
            "num_hidden_layers": self.config.get("num_hidden_layers"),
            "hidden_size": self.config.get("hidden_size"),
            "has_weights": self.has_weights,
            **({"dtype": self.dtype, "seed": self.seed} if self.random_weights else {}),
        }


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")


def check_model_folder(path: Path) -> None:
    """Weights and a tokenizer must both be there before mlx-lm is asked to load them."""
    if not list(Path(path).glob("model*.safetensors")):
        raise InputError(
            f"{path} has no model*.safetensors; convert the model with mlx_lm.convert first"
        )
    if not any((Path(path) / name).exists() for name in TOKENIZER_FILES):
        raise InputError(
            f"{path} has no tokenizer ({', '.join(TOKENIZER_FILES)}); copy the tokenizer "
            "files from the original model into the folder"
        )


def summary(exc: Exception, limit: int = 200) -> str:
    """An exception's first line, shortened at a word boundary, never mid-word."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else exc.__class__.__name__
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return text


def resolve(spec: str | None) -> ModelSource:
    spec = spec or DEFAULT_MODEL
    if spec.startswith("fixture:"):
        path = fixture.fixture_path(spec.split(":", 1)[1])
        return ModelSource(spec, "fixture", read_config(path / "config.json"), path)
    if spec.startswith("shape:"):
        return _resolve_shape(spec)
    if spec.startswith("random:"):
        return _resolve_random(spec)
    if spec.startswith(("gguf:", "real:")):
        return _resolve_gguf(spec)
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(
                f"--model {spec} is a file; pass the model folder that holds config.json"
            )
        config = read_config(path / "config.json")
        _model_classes(config)
        return ModelSource(spec, "local", config, path)
    if _looks_like_hub_id(spec):
        return _resolve_hub(spec)
    raise InputError(
        f"--model {spec}: no such folder; pass an mlx-lm model folder, a hub id, "
        "fixture:tiny, shape:<name>, random:<name>, gguf:<file.gguf> or real:<name>"
    )


def build_from_config(config: dict):
    """Instantiate the architecture mlx-lm uses for `config`; parameters stay lazy."""
    model_class, args_class = _model_classes(config)
    try:
        return model_class(args_class.from_dict(config))
    except (TypeError, KeyError, ValueError, AssertionError, ZeroDivisionError) as exc:
        # mlx-lm's model classes assert on what they need (qwen2: num_key_value_heads)
        reason = (str(exc).strip().splitlines() or [repr(exc)])[0][:200]
        raise InputError(
            f"config.json does not describe a valid {config['model_type']} model: "
            f"{reason or exc.__class__.__name__}"
        )


def _model_classes(config: dict):
    from mlx_lm.utils import _get_classes

    try:
        return _get_classes(config)
    except ValueError:
        raise InputError(
            f"model_type {config.get('model_type')!r} is not supported by the installed mlx-lm; "
            "upgrade mlx-lm or use a supported architecture"
        )


def read_config(path: Path) -> dict:
    if not path.exists():
        raise InputError(f"{path} not found; a model folder needs the config.json mlx-lm writes")
    text = read_text(path, "model config", "a model folder needs the config.json mlx-lm writes")
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        line = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{path} is not valid JSON{line}; fix or re-download it")
    if not isinstance(config, dict) or "model_type" not in config:
        raise InputError(f"{path} has no model_type; it is not a model config.json")
    if "num_hidden_layers" not in config and "text_config" not in config:
        raise InputError(f"{path} has no num_hidden_layers; it is not a language-model config")
    for key, most in CONFIG_MAXIMA.items():
        value = config.get(key, None)
        if (
            key in REQUIRED_INTS
            and key in config
            or value is not None
            and not isinstance(
                value,
                list,  # some architectures give per-layer lists; mlx-lm reads those itself
            )
        ):  # a model is built from these: 10^12 layers never finishes, 0 heads divides by 0
            check(f"{key} in {path}", value, Rule(int, minimum=1, maximum=most))
    heads, kv_heads = config.get("num_attention_heads"), config.get("num_key_value_heads")
    if isinstance(heads, int) and isinstance(kv_heads, int) and heads % kv_heads:
        raise InputError(
            f"num_attention_heads {heads} in {path} is not a multiple of num_key_value_heads "
            f"{kv_heads}; grouped-query attention needs it to be"
        )
    return config


REQUIRED_INTS = ("num_hidden_layers", "hidden_size", "vocab_size")
# Far beyond any released model (the largest have ~126 blocks, 16k hidden, 262k vocab):
# what a corrupted or hostile config.json holds instead.
CONFIG_MAXIMA = {
    "num_hidden_layers": 1024,
    "hidden_size": 1 << 17,
    "intermediate_size": 1 << 20,
    "vocab_size": 1 << 23,
    "num_attention_heads": 4096,
    "num_key_value_heads": 4096,
}


def _resolve_shape(spec: str) -> ModelSource:
    name = spec.split(":", 1)[1]
    if name in shapes.CATALOGUE:
        return ModelSource(spec, "shape", dict(shapes.CATALOGUE[name]))
    path = Path(name).expanduser()
    if path.suffix == ".json" or path.exists():
        config_path = path / "config.json" if path.is_dir() else path
        config = read_config(config_path)
        build_from_config(config)  # fail now, with a clear message, on unsupported types
        return ModelSource(spec, "shape", config, config_path)
    known = ", ".join(shapes.catalogue_names())
    raise InputError(f"unknown shape {name!r}; use one of {known} or shape:path/to/config.json")


def _resolve_gguf(spec: str) -> ModelSource:
    from lora_harness.models import gguf, real

    if spec.startswith("real:"):
        name, _, dtype = spec.split(":", 1)[1].partition("@")
        file = real.gguf_path(name)
        gguf.parse_spec(f"gguf:{file}@{dtype}" if dtype else f"gguf:{file}")  # checks @dtype
    else:
        file, dtype = gguf.parse_spec(spec)
    path = gguf.converted_path(file, dtype or None)
    return ModelSource(spec, "gguf", read_config(path / "config.json"), path)


def _resolve_random(spec: str) -> ModelSource:
    name, _, override = spec.split(":", 1)[1].partition("@")
    shape = _resolve_shape(f"shape:{name}")
    dtype = random_weights.dtype_name(shape.config, override or None)
    if dtype not in random_weights.DTYPES:
        known = " or ".join(f"@{d}" for d in random_weights.DTYPES)
        raise InputError(f"{spec}: random weights cannot be drawn in {dtype!r}; add {known}")
    smallest = fixture.RECIPES["tiny"].vocab_size
    if shape.config.get("vocab_size", smallest) < smallest:
        raise InputError(
            f"{spec}: vocab_size {shape.config['vocab_size']} is below the {smallest} tokens "
            "of the fixture tokenizer random models use; give the config a larger vocabulary"
        )
    return ModelSource(spec, "random", shape.config, shape.path, dtype=dtype)


def declared_config(spec: str | None) -> dict | None:
    """The model's config.json as far as it can be read cheaply: no fixture build, no network.

    None where it cannot (an uncached hub id, a bad path); `resolve` reports bad input.
    """
    spec = spec or DEFAULT_MODEL
    try:
        if spec.startswith("fixture:"):
            recipe = fixture.RECIPES.get(spec.split(":", 1)[1].split("-")[0])
            return {"hidden_size": recipe.hidden_size} if recipe else None
        if spec.startswith(("shape:", "random:")):
            return _resolve_shape("shape:" + spec.split(":", 1)[1].partition("@")[0]).config
        if spec.startswith(("gguf:", "real:")):  # converted once; the run would convert it
            return _resolve_gguf(spec).config
        path = Path(spec).expanduser()
        if path.is_dir():
            return read_config(path / "config.json")
        if _looks_like_hub_id(spec):
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(spec, "config.json")
            return read_config(Path(cached)) if isinstance(cached, str) else None
    except (InputError, OSError, ValueError):
        return None
    return None


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))


def _resolve_hub(spec: str) -> ModelSource:
    from mlx_lm.utils import _download

    try:
        path = Path(_download(spec))
    except Exception as exc:  # the hub client raises many types when offline
        raise InputError(
            f"--model {spec}: could not fetch it from the Hugging Face hub "
            f"({exc.__class__.__name__}); download it where the hub is reachable and pass "
            "the local folder, or use fixture:tiny"
        )
    return ModelSource(spec, "hub", read_config(path / "config.json"), path)
