"""gguf: models, without the real model: a small Llama written as llama.cpp writes it.

A random mlx-lm Llama is saved as a GGUF file with llama.cpp's names, its q/k rows in
llama.cpp's rotary order and the fixture's BPE tokenizer in the metadata; converted back
it must compute exactly what the original computes, and read the same tokens.
"""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from lora_harness.core.errors import InputError
from lora_harness.models import gguf
from lora_harness.models.sources import resolve

CONFIG = {
    "model_type": "llama",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}
TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
GGUF_NAMES = {v: k for k, v in gguf.LAYER_NAMES.items()}


def permute(weight, heads):
    """llama.cpp's convert_hf_to_gguf.py LlamaModel.permute (the order gguf.py undoes)."""
    rows = weight.shape[0]
    shaped = weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:])
    return shaped.swapaxes(1, 2).reshape(weight.shape)


def llama_cpp_name(name: str) -> str:
    if name.startswith("model.layers."):
        _, _, block, *module, leaf = name.split(".")
        return f"blk.{block}.{GGUF_NAMES['.'.join(module)]}.{leaf}"
    return {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}[name]  # fmt: skip


def tokenizer_metadata(fixture_folder) -> dict:
    spec = json.loads((fixture_folder / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    for added in spec["added_tokens"]:
        vocab[added["content"]] = added["id"]
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    special = {a["id"] for a in spec["added_tokens"]}
    types = [3 if i in special else 1 for i in range(len(tokens))]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.merges": merges,
        "tokenizer.ggml.token_type": mx.array(types, dtype=mx.int32),
        "tokenizer.ggml.eos_token_id": mx.array(tokens.index("<|im_end|>"), dtype=mx.uint32),
        "tokenizer.chat_template": TEMPLATE,
    }


def write_gguf(path, model, tokenizer_meta, file_type=1):
    from mlx.utils import tree_flatten

    heads = {"q_proj": CONFIG["num_attention_heads"], "k_proj": CONFIG["num_key_value_heads"]}
    tensors = {}
    for name, array in tree_flatten(model.parameters()):
        projection = name.split(".")[-2]
        tensors[llama_cpp_name(name)] = permute(array, heads[projection]) if projection in heads else array  # fmt: skip
    u32 = lambda value: mx.array(value, dtype=mx.uint32)  # noqa: E731
    metadata = {
        "general.architecture": "llama",
        "general.file_type": u32(file_type),
        "llama.embedding_length": u32(CONFIG["hidden_size"]),
        "llama.block_count": u32(CONFIG["num_hidden_layers"]),
        "llama.attention.head_count": u32(CONFIG["num_attention_heads"]),
        "llama.attention.head_count_kv": u32(CONFIG["num_key_value_heads"]),
        "llama.feed_forward_length": u32(CONFIG["intermediate_size"]),
        "llama.attention.layer_norm_rms_epsilon": mx.array(CONFIG["rms_norm_eps"]),
        "llama.rope.freq_base": mx.array(CONFIG["rope_theta"]),
        "llama.context_length": u32(CONFIG["max_position_embeddings"]),
        "llama.vocab_size": u32(len(tokenizer_meta["tokenizer.ggml.tokens"])),
        **tokenizer_meta,
    }
    mx.save_gguf(str(path), tensors, metadata)
    return path


@pytest.fixture(scope="module")
def original(fixture_source, tmp_path_factory):
    """(the random Llama, its GGUF file) with the fixture's tokenizer."""
    from mlx_lm.models import llama

    meta = tokenizer_metadata(fixture_source.path)
    config = {**CONFIG, "vocab_size": len(meta["tokenizer.ggml.tokens"])}
    mx.random.seed(3)
    model = llama.Model(llama.ModelArgs.from_dict(config))
    model.set_dtype(mx.float16)  # an F16 GGUF file
    mx.eval(model.parameters())
    path = write_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf", model, meta)
    return model, path


def test_a_converted_gguf_computes_what_the_original_computes(original):
    model, path = original
    converted, tokenizer = resolve(f"gguf:{path}").load()
    tokens = mx.array([[5, 17, 300, 42, 9, 611, 3, 64]])
    expected, actual = model(tokens), converted(tokens)
    assert mx.array_equal(actual, expected).item()


def test_without_the_unpermute_the_conversion_would_differ(original, monkeypatch, tmp_path):
    """The round trip above holds only because the q/k rows are put back in order."""
    model, path = original
    monkeypatch.setenv("LORA_HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf, "unpermute", lambda array, heads: array)
    converted, _ = resolve(f"gguf:{path}").load()
    tokens = mx.array([[5, 17, 300, 42, 9, 611, 3, 64]])
    assert not mx.allclose(converted(tokens), model(tokens), atol=1e-2).item()


def test_the_tokenizer_reads_what_the_fixture_tokenizer_reads(original, fixture_source):
    from mlx_lm.utils import load_tokenizer

    _, path = original
    ours = resolve(f"gguf:{path}").tokenizer()
    reference = load_tokenizer(fixture_source.path)
    for text in ("The quiet harbour at dawn.", "naïve café: 日本 🙂", "def f(x):\n\treturn x**2"):
        assert ours.encode(text) == reference.encode(text)
        assert ours.decode(ours.encode(text)) == text
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ids = ours.apply_chat_template(messages)
    assert ids == reference.encode(reference.apply_chat_template(messages, tokenize=False))
    im_end = ours.convert_tokens_to_ids("<|im_end|>")
    assert ids.count(im_end) == 2 and im_end in ours.eos_token_ids


def test_dequantised_formats_hold_the_same_weights(original):
    model, path = original
    for dtype, mlx_dtype in (("float32", mx.float32), ("bf16", mx.bfloat16)):
        converted, _ = resolve(f"gguf:{path}@{dtype}").load()
        weight = converted.model.layers[0].mlp.up_proj.weight
        assert weight.dtype == mlx_dtype
        expected = model.model.layers[0].mlp.up_proj.weight.astype(mlx_dtype)
        assert mx.array_equal(weight, expected).item()


@pytest.mark.parametrize(
    ("file_type", "named"), [(15, "Q4_K_M"), (18, "Q6_K"), (99, "file type 99")]
)
def test_a_type_mlx_cannot_read_is_refused_naming_it(original, tmp_path, file_type, named):
    model, _ = original
    meta = tokenizer_metadata(resolve("fixture:tiny").path)
    path = write_gguf(tmp_path / "k.gguf", model, meta, file_type=file_type)
    with pytest.raises(InputError, match=f"holds {named} tensors") as caught:
        resolve(f"gguf:{path}")
    assert "\n" not in str(caught.value)


def test_bad_gguf_specs_are_one_line_errors(original, tmp_path):
    _, path = original
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    for spec, message in (
        (f"gguf:{tmp_path}/missing.gguf", "is not a file"),
        (f"gguf:{path}@int8", "unknown format @int8"),
        (f"gguf:{tmp_path}/junk.gguf", "mlx cannot read it as GGUF"),
        ("real:no-such-model", "unknown real model"),
    ):
        with pytest.raises(InputError, match=message) as caught:
            resolve(spec)
        assert "\n" not in str(caught.value)


def test_quantised_layers_keep_their_bits(original):
    """Mixed files (Q8_0 layers in a Q4_1 file) get per-layer entries in mlx-lm's config."""
    weights = {
        "a.weight": mx.zeros((8, 8), dtype=mx.uint32),  # 64 inputs at 4 bits
        "a.scales": mx.zeros((8, 2)),
        "b.weight": mx.zeros((8, 16), dtype=mx.uint32),  # 64 inputs at 8 bits
        "b.scales": mx.zeros((8, 2)),
        "c.weight": mx.zeros((8, 8), dtype=mx.uint32),
        "c.scales": mx.zeros((8, 2)),
    }
    assert gguf._quantization_of(weights) == {"group_size": 32, "bits": 4, "b": {"group_size": 32, "bits": 8}}  # fmt: skip
    assert np.asarray(gguf.unpermute(permute(mx.arange(24).reshape(12, 2), 3), 3)).tolist() == np.arange(24).reshape(12, 2).tolist()  # fmt: skip
