"""The built-in `fixture:tiny` model: a real mlx-lm model folder made here, offline.

A byte-level BPE tokenizer with Qwen-style special tokens is trained on the synthetic
corpus, a Qwen2-architecture model with a few blocks is initialised from a fixed seed,
and both are saved as an mlx-lm model folder in a cache keyed by the recipe's hash, so
`mlx_lm.load` reads it back exactly as it reads a downloaded model.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from lora_harness.core.files import build_once, staging_folder
from lora_harness.models.manifest import discard_if_untrusted, write_manifest
from lora_harness.text import corpus

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Qwen2's template, trimmed to what the fixture needs: system/user/assistant turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class FixtureRecipe:
    """Everything that decides the fixture's bytes; its hash names the cache folder."""

    name: str = "tiny"
    vocab_size: int = 1024
    hidden_size: int = 64
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    corpus_per_voice: int = 400
    pretrain_steps: int = 160
    seed: int = 0
    version: int = 2

    def digest(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


RECIPES = {"tiny": FixtureRecipe()}


def cache_root() -> Path:
    """Where built fixtures live: $LORA_HARNESS_CACHE, else the XDG cache folder."""
    if env := os.environ.get("LORA_HARNESS_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mlx-lora-harness"


def fixture_path(name: str = "tiny") -> Path:
    """The cached model folder for fixture `name`, building it on first use (~30 s on CPU).

    `name` may carry a format: tiny-bf16, tiny-fp16, tiny-q4, tiny-q8-g32, tiny-bf16-q4,
    tiny-mxfp4 (see models/variants.py), converted from the fixture by mlx_lm.convert."""
    recipe = RECIPES.get(name)
    if recipe is None:
        base = name.split("-", 1)[0]
        if base in RECIPES and "-" in name:
            # A format variant (fixture:tiny-bf16, -q4-g32, ...), made by mlx_lm.convert.
            from lora_harness.models import variants

            return variants.variant_path(name, fixture_path(base))
        from lora_harness.core.errors import InputError

        known = ", ".join(f"fixture:{n}" for n in RECIPES)
        raise InputError(
            f"unknown fixture {name!r}; available: {known} and its formats, e.g. "
            "fixture:tiny-bf16, fixture:tiny-q4, fixture:tiny-q8-g32"
        )
    folder = cache_root() / "fixtures" / f"{recipe.name}-{recipe.digest()}"
    discard_if_untrusted(folder, f"fixture:{recipe.name}")
    build_once(folder, lambda: _build_atomically(recipe, folder))
    return folder


def export(name: str, destination: Path) -> Path:
    """Copy the fixture model folder to `destination` for mlx_lm.lora and other tools."""
    source = fixture_path(name)
    destination.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        shutil.copy2(item, destination / item.name)
    return destination


def _build_atomically(recipe: FixtureRecipe, folder: Path) -> None:
    # Build beside the target and rename, so a crash or a concurrent build never
    # leaves a half-written folder that later runs would trust.
    import sys

    print(
        f"lora-harness: building fixture:{recipe.name} once (pre-training, ~30 s on a CPU); "
        f"cached in {folder}",
        file=sys.stderr,
    )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with staging_folder(folder) as staging:
        staging.chmod(0o755)
        texts = corpus.mixed_corpus(recipe.corpus_per_voice, seed=recipe.seed)
        _write_tokenizer(recipe, texts, staging)
        _write_model(recipe, texts, staging)
        write_manifest(staging)  # last: a folder without it is never trusted
        try:
            staging.rename(folder)
        except OSError:
            if not (folder / "config.json").exists():
                raise


def _write_tokenizer(recipe: FixtureRecipe, texts: list[str], folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 1024,
        "clean_up_tokenization_spaces": False,
    }
    _write_json(folder / "tokenizer_config.json", tokenizer_config)


def _write_model(recipe: FixtureRecipe, texts: list[str], folder: Path) -> None:
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2
    from mlx_lm.utils import load_tokenizer

    from lora_harness.models.pretrain import pretrain

    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    special_ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    config = {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "hidden_size": recipe.hidden_size,
        "num_hidden_layers": recipe.num_hidden_layers,
        "num_attention_heads": recipe.num_attention_heads,
        "num_key_value_heads": recipe.num_key_value_heads,
        "intermediate_size": recipe.intermediate_size,
        "vocab_size": max(len(vocab), max(special_ids.values()) + 1),
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 1024,
        "tie_word_embeddings": True,
        "eos_token_id": special_ids["<|endoftext|>"],
        "torch_dtype": "float32",
    }
    _write_json(folder / "config.json", config)
    eos_ids = [special_ids["<|endoftext|>"], special_ids["<|im_end|>"]]
    _write_json(folder / "generation_config.json", {"eos_token_id": eos_ids})
    mx.random.seed(recipe.seed)
    model = qwen2.Model(qwen2.ModelArgs.from_dict(config))
    losses = pretrain(model, load_tokenizer(folder), texts, recipe.pretrain_steps, recipe.seed)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(folder / "model.safetensors"), weights, metadata={"format": "mlx"})
    _write_json(folder / "fixture_recipe.json", {**asdict(recipe), "final_loss": losses[-1]})


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
