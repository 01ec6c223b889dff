"""Generation health: spam and loops caught, the voice scorer well-behaved, baselines kept."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_harness.core.errors import InputError
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs import baselines
from lora_harness.runs.context import RunContext
from lora_harness.runs.suites import all_checks
from lora_harness.text.generation import Generation, GenerationSettings, repeated_ngram_share
from lora_harness.text.voice import load_scorer, stylometric_score

texts = st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=6)


@settings(max_examples=100, deadline=None)
@given(texts)
def test_identical_texts_score_one(sample):
    if not any(t.strip() for t in sample):
        return
    assert stylometric_score(sample, sample) == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(texts, texts)
def test_score_is_in_unit_interval_and_deterministic(generations, references):
    score = stylometric_score(generations, references)
    assert 0.0 <= score <= 1.0
    assert stylometric_score(generations, references) == score


@given(texts)
def test_empty_generations_score_zero(references):
    assert stylometric_score([], references) == 0.0
    assert stylometric_score(["", "   "], references) == 0.0


def test_scorer_separates_the_two_fixture_voices():
    from lora_harness.text import corpus

    def bodies(voice, seed):
        return [t.split(":", 1)[1] for t in corpus.corpus(voice, 40, seed=seed)]

    reference = bodies("folksy", 99)
    assert (
        stylometric_score(bodies("folksy", 1), reference)
        > stylometric_score(bodies("formal", 1), reference) + 0.3
    )


def test_repeated_ngram_share():
    assert repeated_ngram_share(list(range(20))) == 0.0
    assert repeated_ngram_share([7] * 20) > 0.9


def _check_on(ctx, name):
    return all_checks()[name]().run(ctx)


def test_special_token_literals_in_output_fail(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig())
    leaked = Generation("p", "greedy", "fine text<|im_end|><|endoftext|>", [1, 2, 3], True)
    ctx.generation.generations = [leaked] + [Generation("p", "greedy", "ok", [4, 5], True)] * 7
    result = _check_on(ctx, "no_endoftext_spam")
    assert result.status == "fail"
    assert "<|im_end|>" in result.message


def test_generations_that_run_to_the_length_limit_warn(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig())
    ctx.generation.generations = [Generation("p", "greedy", "some words", [1, 2, 3], False)] * 4
    assert _check_on(ctx, "no_endoftext_spam").status == "warn"


def test_stop_set_includes_generation_config_and_end_of_turn(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig())
    vocab = ctx.model.tokenizer.get_vocab()
    assert {vocab["<|endoftext|>"], vocab["<|im_end|>"]} <= ctx.generation.stop_ids


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_pinned_voice_score_above_reach_fails(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig(), pins={"voice_score": 0.99})
    result = _check_on(ctx, "voice_score_baseline")
    assert result.status == "fail"
    assert result.evidence["baseline_source"] == "pinned (--expect)"


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_baseline_file_round_trip_and_use(fixture_source, tmp_path):
    path = tmp_path / "baselines.json"
    ctx = RunContext(
        fixture_source,
        LoRAConfig(),
        generation_settings=GenerationSettings(baseline_path=str(path)),
    )
    baselines.save(path, ctx.generation.baseline_key(), {"voice_score": 0.99, "run_id": "r1"})
    result = _check_on(ctx, "voice_score_baseline")
    assert result.status == "fail"
    assert "baseline file (r1)" in result.evidence["baseline_source"]
    path.write_text(json.dumps({"schema_version": 7}))
    with pytest.raises(InputError, match="version-1"):
        baselines.read(path)


def test_custom_scorer_is_loaded_and_bad_specs_are_input_errors():
    assert load_scorer("tests.support.helpers:constant_scorer")([], []) == 0.5
    for spec in ("nocolon", "no.such.module:f", "tests.support.helpers:missing"):
        with pytest.raises(InputError):
            load_scorer(spec)


def test_cli_save_then_use_baseline(cli, tmp_path):
    saved = cli("run", "-q", "--out", "o", "--save-baseline", "b.json")
    assert saved.returncode == 0, saved.stderr
    document = json.loads((tmp_path / "b.json").read_text())
    (entry,) = document["baselines"].values()
    again = cli("run", "-q", "--out", "o", "--baseline", "b.json", "--json", "-")
    check = {c["name"]: c for c in again.json()["checks"]}["voice_score_baseline"]
    assert check["status"] == "pass"
    assert check["evidence"]["baseline"] == entry["voice_score"]


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--prompts", "missing.txt"], "--prompts missing.txt is not a file"),
        (["--voice-scorer", "nope"], "module:callable"),
        (["--voice-tolerance", "-1"], "--voice-tolerance"),
    ],
)
def test_generation_flags_bad_input(cli, args, fragment):
    result = cli("run", *args)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_user_prompts_and_references(cli, tmp_path):
    (tmp_path / "prompts.txt").write_text(
        "On the matter of the river:\nOn the matter of the school:\n"
    )
    (tmp_path / "refs.jsonl").write_text(json.dumps({"text": "Well, I reckon it's so."}) + "\n")
    result = cli(
        "run",
        "-q",
        "--out",
        "o",
        "--prompts",
        "prompts.txt",
        "--voice-references",
        "refs.jsonl",
        "--check",
        "no_endoftext_spam",
        "--json",
        "-",
    )
    assert result.returncode == 0, result.stderr
    assert len(result.json()["generation"]["samples"]) == 4  # 2 prompts x greedy/sampled
