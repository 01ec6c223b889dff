"""The data checks judge the batches the compiled step consumed (issue 18)."""

from __future__ import annotations

import dataclasses
import json
import random

import mlx.core as mx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_lm.tuner.trainer import default_loss

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.loss_coverage import RowSpan, expected_tokens, reference_scores_first_pad
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs.context import RunContext
from lora_harness.runs.suites import all_checks
from lora_harness.text import corpus

COVERAGE, TERMINATED = "loss_covers_expected_tokens", "training_examples_terminated"


def _run(source, names, recipe=CORRECT, data_dir=None, **lora_changes):
    ctx = RunContext(
        source, dataclasses.replace(LoRAConfig(), **lora_changes), recipe=recipe, data_dir=data_dir
    )
    return {name: all_checks()[name]().run(ctx) for name in names}, ctx


@pytest.fixture(scope="module")
def prompt_data(tmp_path_factory):
    """The same pairs as prompt/completion rows and as chat rows."""
    rng = random.Random(0)
    pairs = [
        (corpus.prompt_for(rng.choice(corpus.TOPICS)), corpus.sentence("folksy", rng))
        for _ in range(8)
    ]
    rows = {
        "completions": [{"prompt": p, "completion": c} for p, c in pairs],
        "chat": [
            {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": c}]}
            for p, c in pairs
        ],
    }
    folders = {}
    for name, lines in rows.items():
        folder = tmp_path_factory.mktemp(name)
        (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
        folders[name] = str(folder)
    return folders


def test_the_outcome_records_each_batch_the_step_consumed(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig(iters=3, max_seq_length=12))
    consumed = ctx.training.batches
    tokens, lengths = ctx.model.probe_batch
    assert len(consumed) == len(ctx.training.metrics) == 3
    first = consumed[0]
    assert first.lengths == tuple(lengths[:, 1].tolist()) == (12,) * tokens.shape[0]
    assert first.width == tokens.shape[1] == 12
    assert first.examples == ctx.model.probe_examples
    dataset = ctx.model.training_dataset
    for index, tail in zip(first.examples, first.tails, strict=True):
        assert list(tail) == list(dataset[index][0][:12][-len(tail) :])


def test_max_seq_length_12_fails_terminated_with_the_truncation_message(cli, fixture_source):
    result = cli("run", "--max-seq-length", "12", "--check", TERMINATED, "--json", "-")
    assert result.returncode == 1, result.stderr
    (check,) = result.json()["checks"]
    _, ctx = _run(fixture_source, [])
    lengths = [len(ctx.model.training_dataset[i][0]) for i in range(64)]
    assert check["status"] == "fail"
    assert "truncation to --max-seq-length 12 cuts the terminator off 64 of 64" in check["message"]
    assert f"--max-seq-length {max(lengths)} keeps them whole" in check["message"]
    assert check["evidence"]["truncated_consumed"] == LoRAConfig().batch_size


def test_terminated_passes_at_the_length_it_recommends(fixture_source):
    results, ctx = _run(fixture_source, [TERMINATED], max_seq_length=12)
    keep = results[TERMINATED].evidence["keeps_whole_at"]
    results, _ = _run(fixture_source, [TERMINATED], max_seq_length=keep)
    assert results[TERMINATED].status == "pass", results[TERMINATED].message
    results, _ = _run(fixture_source, [TERMINATED], max_seq_length=keep - 1)
    assert results[TERMINATED].status == "fail"


def test_truncated_chat_rows_are_told_apart_from_rows_without_terminator(
    fixture_source, prompt_data
):
    results, ctx = _run(fixture_source, [TERMINATED], data_dir=prompt_data["chat"])
    assert results[TERMINATED].status == "pass", results[TERMINATED].message
    results, _ = _run(fixture_source, [TERMINATED], data_dir=prompt_data["chat"], max_seq_length=20)
    assert results[TERMINATED].status == "fail"
    assert results[TERMINATED].evidence["missing_count"] == 0
    assert "truncation to --max-seq-length 20" in results[TERMINATED].message


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"batch_size": 1},
        {"batch_size": 8, "keys": ["self_attn.q_proj", "self_attn.v_proj"]},
        {"fine_tune_type": "dora", "batch_size": 2},
        {"max_seq_length": 30},  # some rows truncated, others padded
        {"max_seq_length": 12},  # every row truncated: no padding column
    ],
)
def test_loss_coverage_passes_on_clean_runs(fixture_source, changes):
    results, _ = _run(fixture_source, [COVERAGE], iters=2, **changes)
    assert results[COVERAGE].status == "pass", results[COVERAGE].message


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["completions", "chat"])
@pytest.mark.parametrize("mask_prompt", [False, True])
def test_loss_coverage_passes_on_prompt_data_masked_or_not(
    fixture_source, prompt_data, fmt, mask_prompt
):
    results, ctx = _run(
        fixture_source, [COVERAGE], data_dir=prompt_data[fmt], iters=2, mask_prompt=mask_prompt
    )
    assert results[COVERAGE].status == "pass", results[COVERAGE].message
    offsets = ctx.training.batches[0].offsets
    assert all(o > 0 for o in offsets) if mask_prompt else set(offsets) == {0}


def _loss_ignoring_prompt_mask(model, batch, lengths):
    return default_loss(model, batch, mx.stack([lengths[:, 1] * 0, lengths[:, 1]], axis=1))


def test_loss_coverage_fails_when_the_loss_ignores_the_prompt_mask(fixture_source, prompt_data):
    recipe = dataclasses.replace(CORRECT, loss=_loss_ignoring_prompt_mask)
    data = prompt_data["completions"]
    results, _ = _run(fixture_source, [COVERAGE], recipe, data, iters=2, mask_prompt=True)
    assert results[COVERAGE].status == "fail"
    assert "too many" in results[COVERAGE].message
    results, _ = _run(fixture_source, [COVERAGE], recipe, data, iters=2)  # nothing to mask
    assert results[COVERAGE].status == "pass", results[COVERAGE].message


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 12), st.integers(1, 12)).map(lambda t: (min(t), max(t))),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 4),
)
def test_the_derived_count_matches_the_reference_loss(rows, extra_width):
    # The derivation is checked against mlx-lm's own default_loss on arbitrary batches.
    width = max(2, max(n for _, n in rows) + extra_width)
    batch = mx.ones((len(rows), width), mx.int32)
    lengths = mx.array([[start, n] for start, n in rows])
    _, scored = default_loss(lambda x: mx.zeros((*x.shape, 2)), batch, lengths)
    spans = [RowSpan(start, n) for start, n in rows]
    assert expected_tokens(spans, width, reference_scores_first_pad()) == scored.item()


def test_mask_prompt_on_text_rows_is_an_input_error(cli):
    result = cli("run", "--mask-prompt", "--check", COVERAGE)
    assert result.returncode == 2
    assert "--mask-prompt needs prompt/completion or messages rows" in result.stderr
    assert "Traceback" not in result.stderr


class _OffsetWithoutGenerationPrompt:
    """A recipe's own tokenize: mlx-lm's rows, but each prompt offset computed without the
    generation prompt, so the assistant header is trained on (it agrees with itself)."""

    def __init__(self, rows, tokenizer):
        from mlx_lm.tuner.datasets import create_dataset

        self.rows, self.tokenizer = rows, tokenizer
        self.inner = create_dataset(rows, tokenizer, type("C", (), {"mask_prompt": True}))

    def process(self, row):
        tokens, _ = self.inner.process(row)
        prompt = [{"role": "user", "content": row["prompt"]}]
        offset = self.tokenizer.apply_chat_template(prompt, return_dict=False)
        return tokens, len(offset)

    def __getitem__(self, index):
        return self.rows[index]

    def __len__(self):
        return len(self.rows)


def _tokenize_offset_without_generation_prompt(rows, tokenizer, mask_prompt=False):
    from mlx_lm.tuner.datasets import CacheDataset

    return CacheDataset(_OffsetWithoutGenerationPrompt(rows, tokenizer))


def test_loss_coverage_fails_on_a_tokenize_step_with_the_wrong_offset(fixture_source, prompt_data):
    # The offsets come from the recipe under test; the expectation must not (issue 24).
    recipe = dataclasses.replace(CORRECT, tokenize=_tokenize_offset_without_generation_prompt)
    data = prompt_data["completions"]
    results, ctx = _run(fixture_source, [COVERAGE], recipe, data, iters=2, mask_prompt=True)
    assert results[COVERAGE].status == "fail"
    assert "too many" in results[COVERAGE].message
    results, _ = _run(fixture_source, [COVERAGE], CORRECT, data, iters=2, mask_prompt=True)
    assert results[COVERAGE].status == "pass", results[COVERAGE].message


@pytest.mark.parametrize("fmt", ["completions", "chat"])
def test_prompt_offsets_from_the_data_match_mlx_lm_datasets(fixture_source, prompt_data, fmt):
    from lora_harness.text.data import load_rows, tokenized_dataset
    from lora_harness.text.prompt_offsets import prompt_offset

    rows = load_rows(prompt_data[fmt])
    _, tokenizer = fixture_source.load()
    dataset = tokenized_dataset(rows, tokenizer, mask_prompt=True)
    offsets = [prompt_offset(row, tokenizer) for row in rows]
    assert offsets == [dataset[i][1] for i in range(len(rows))]
    assert prompt_offset({"text": "no prompt here"}, tokenizer) == 0
