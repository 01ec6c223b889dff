"""A GGUF file's byte-level BPE tokenizer as tokenizer.json + tokenizer_config.json.

GGUF keeps the vocabulary (`tokenizer.ggml.tokens`, already in GPT-2's byte-to-unicode
alphabet), the merges, each token's type (3 = control, 4 = user-defined: the special
tokens), the special ids, the pre-tokenizer's name (`tokenizer.ggml.pre`) and the chat
template. The `tokenizers` library builds the same tokenizer from them.
"""

from __future__ import annotations

import json
from pathlib import Path

from lora_harness.core.errors import InputError

CONTROL, USER_DEFINED = 3, 4
# llama.cpp's pre-tokenizer regexes by name (llama-vocab.cpp), as `tokenizers` pre-tokenizers.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pre_tokenizer(name: str):
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name in ("gpt2", "default", "smollm"):
        if name != "smollm":
            return byte_level
        # SmolLM splits every digit on its own before GPT-2's regex.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if name == "llama-bpe":
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise InputError(
        f"the GGUF tokenizer's pre-tokenizer {name!r} is not supported here (gpt2, smollm, "
        "llama-bpe are); convert the original model with mlx_lm.convert"
    )


def build(metadata: dict):
    """The `tokenizers.Tokenizer` described by the GGUF metadata."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, processors

    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise InputError(
            f"the GGUF tokenizer is {metadata.get('tokenizer.ggml.model')!r}, not byte-level BPE "
            "('gpt2'); only byte-level BPE tokenizers are converted here"
        )
    tokens = list(metadata["tokenizer.ggml.tokens"])
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("tokenizer.ggml.merges", [])]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tokenizer.pre_tokenizer = pre_tokenizer(metadata.get("tokenizer.ggml.pre", "gpt2"))
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(tokens[i], special=True, normalized=False) for i in special_ids(metadata)]
    )
    if _flag(metadata, "tokenizer.ggml.add_bos_token") and _id(metadata, "bos") is not None:
        bos = tokens[_id(metadata, "bos")]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer


def special_ids(metadata: dict) -> list[int]:
    types = metadata.get("tokenizer.ggml.token_type")
    if types is None:
        return []
    return [i for i, kind in enumerate(types.tolist()) if kind in (CONTROL, USER_DEFINED)]


def eos_ids(metadata: dict) -> list[int]:
    """Every id generation stops at: eos, end-of-turn, and the chat template's turn end."""
    tokens = list(metadata["tokenizer.ggml.tokens"])
    ids = [_id(metadata, "eos"), _id(metadata, "eot")]
    template = metadata.get("tokenizer.chat_template") or ""
    for i in special_ids(metadata):
        if tokens[i] in template and "end" in tokens[i]:
            ids.append(i)
    return sorted({i for i in ids if i is not None})


def write(metadata: dict, folder: Path) -> list[int]:
    """Write tokenizer.json and tokenizer_config.json into `folder`; returns the eos ids."""
    tokens = list(metadata["tokenizer.ggml.tokens"])
    build(metadata).save(str(folder / "tokenizer.json"))
    name = {key: tokens[i] for key in ("bos", "eos", "unknown", "padding") if (i := _id(metadata, key)) is not None}  # fmt: skip
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name.get("bos"),
        "eos_token": name.get("eos"),
        "unk_token": name.get("unknown"),
        "pad_token": name.get("padding", name.get("eos")),
        "additional_special_tokens": [tokens[i] for i in special_ids(metadata)],
        "add_bos_token": _flag(metadata, "tokenizer.ggml.add_bos_token"),
        "model_max_length": int(
            _scalar(metadata, f"{metadata['general.architecture']}.context_length", 2048)
        ),  # fmt: skip
        "clean_up_tokenization_spaces": False,
    }
    if template := metadata.get("tokenizer.chat_template"):
        config["chat_template"] = template
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return eos_ids(metadata)


def _scalar(metadata: dict, key: str, default=None):
    value = metadata.get(key)
    if value is None:
        return default
    return value.item() if hasattr(value, "item") else value


def _id(metadata: dict, name: str) -> int | None:
    value = _scalar(metadata, f"tokenizer.ggml.{name}_token_id")
    return None if value is None else int(value)


def _flag(metadata: dict, key: str) -> bool:
    return bool(_scalar(metadata, key, False))
