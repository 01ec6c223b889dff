"""The trainer-behaviour checks, each on the harness's trainer (clean), a coded fault, and
mlx-lm's own trainer: gradient accumulation, learning-rate schedule, resume, chat format."""

from __future__ import annotations

import pytest
from mlx_lm.tuner.trainer import iterate_batches

from lora_harness.lora import accumulation as acc
from lora_harness.lora import trainer_faults as faults
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs.model_part import ModelPart
from lora_harness.runs.suites import all_checks


class Ctx:
    """The parts of a run context the trainer checks read."""

    def __init__(self, part, **probes):
        self.model = part
        self.__dict__.update(probes)

    def offers(self, capability):
        return True

    def why_not(self, capability):
        return ""


@pytest.fixture(scope="module")
def part(fixture_cache):
    from lora_harness.models.sources import resolve

    source = resolve("fixture:tiny")
    return ModelPart(source, LoRAConfig(num_layers=-1), CORRECT, None, None, "sft")


@pytest.fixture(scope="module")
def micro_batches(part):
    batches = iterate_batches(part.training_dataset, 2, 256, loop=True, seed=0)
    return [next(batches) for _ in range(6)]


def run_ga(part, micro_batches, trainer, name, k=4):
    probe = acc.AccumulationProbe(trainer, name, k, micro_batches)
    return all_checks()["grad_accumulation_matches_batch"]().run(Ctx(part, accumulation=probe))


def test_ga_passes_on_the_harness_token_weighted_trainer(part, micro_batches):
    result = run_ga(part, micro_batches, acc.harness_trainer, "harness")
    assert result.status == "pass", result.message
    assert len(set(result.evidence["micro_batch_loss_tokens"])) > 1  # variable-length rows


def test_ga_reports_the_deviation_of_mlx_lms_own_trainer(part, micro_batches):
    result = run_ga(part, micro_batches, acc.mlx_lm_trainer, "mlx_lm")
    ev = result.evidence
    assert result.status == "fail"
    assert ev["deviation"] > 100 * ev["noise_floor"]  # measured, and reported in the message
    assert f"{ev['deviation']:.2%}" in result.message
    assert "last window was dropped" in result.message


@pytest.mark.parametrize(
    "trainer, words",
    [
        (faults.mean_of_means_trainer, "away from one batch"),
        (faults.drop_partial_window_trainer, "last window was dropped"),
    ],
)
def test_ga_fails_on_each_coded_fault(part, micro_batches, trainer, words):
    result = run_ga(part, micro_batches, trainer, trainer.__name__)
    assert result.status == "fail" and words in result.message


def test_ga_skips_without_accumulation(part, micro_batches):
    result = run_ga(part, micro_batches, acc.harness_trainer, "harness", k=1)
    assert result.status == "skip"


# -- resume -------------------------------------------------------------------------------------

SCHEDULE = {"name": "cosine_decay", "arguments": [1e-3, 20], "warmup": 3}


def make_adam():
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import build_schedule

    return optim.Adam(learning_rate=build_schedule(SCHEDULE))


def run_resume(part, probe):
    return all_checks()["resume_continues_run"]().run(Ctx(part, resume=probe))


def test_resume_passes_on_the_harness_checkpoint(part, micro_batches):
    from lora_harness.lora.resume_probe import harness_probe

    result = run_resume(part, harness_probe(make_adam, micro_batches))
    assert result.status == "pass", result.message


def test_resume_measures_what_mlx_lms_resume_adapter_file_loses(part, micro_batches):
    from lora_harness.lora.resume_probe import mlx_lm_probe

    result = run_resume(part, mlx_lm_probe(make_adam, micro_batches))
    ev = result.evidence
    assert result.status == "fail"
    assert ev["step"] == ev["stopped_at"] and ev["expected_step"] == 2 * ev["stopped_at"]
    assert ev["moment_distance"] > 0.5 and ev["adapter_distance"] > ev["allowed"]
    assert "schedule restarted" in result.message


@pytest.mark.parametrize(
    "fault, words",
    [
        (faults.resume_without_step, "optimizer step"),
        (faults.resume_reinitialises_adapters, "adapters"),
    ],
)
def test_resume_fails_on_each_coded_fault(part, micro_batches, fault, words):
    result = run_resume(part, fault(make_adam, micro_batches))
    assert result.status == "fail" and words in result.message


def test_the_resume_probe_leaves_the_runs_adapters_as_they_were(part, micro_batches):
    from mlx.utils import tree_flatten

    from lora_harness.core import fingerprint
    from lora_harness.lora.resume_probe import mlx_lm_probe

    before = fingerprint.fingerprint(dict(tree_flatten(part.lora_model.trainable_parameters())))
    run_resume(part, mlx_lm_probe(make_adam, micro_batches))
    after = fingerprint.fingerprint(dict(tree_flatten(part.lora_model.trainable_parameters())))
    assert before == after


# -- learning-rate schedule ---------------------------------------------------------------------


def run_schedule(part, optimizer, iteration, k=1):
    from types import SimpleNamespace

    from mlx_lm.tuner.utils import build_schedule

    from lora_harness.checks.lr_schedule_applied import ScheduleProbe

    ctx = Ctx(
        part,
        schedule=ScheduleProbe(build_schedule(SCHEDULE), k),
        iteration=iteration,
        training=SimpleNamespace(optimizer=optimizer),
    )
    return all_checks()["lr_schedule_applied"]().run(ctx)


def _trained(part, trainer, batches, optimizer, k=1):
    from lora_harness.lora.resume_probe import _adapters, _set

    start = _adapters(part.lora_model)
    try:
        trainer(part.lora_model, optimizer, batches, k)
    finally:
        _set(part.lora_model, start)
    return optimizer


@pytest.mark.parametrize("name", ["harness", "mlx_lm"])
def test_schedule_passes_on_both_trainers(part, micro_batches, name):
    trainer = {"harness": acc.harness_trainer, "mlx_lm": acc.mlx_lm_trainer}[name]
    optimizer = _trained(part, trainer, micro_batches[:4], make_adam(), k=2)
    result = run_schedule(part, optimizer, iteration=4, k=2)
    assert result.status == "pass", result.message


def test_schedule_fails_when_the_configured_schedule_is_ignored(part, micro_batches):
    from types import SimpleNamespace

    optimizer = faults.schedule_ignored_optimizer(SimpleNamespace(learning_rate=1e-3))
    _trained(part, acc.harness_trainer, micro_batches[:2], optimizer)  # inside the warmup
    result = run_schedule(part, optimizer, iteration=2)
    assert result.status == "fail" and "the schedule gives" in result.message


def test_schedule_fails_when_every_micro_batch_steps_the_optimizer(part, micro_batches):
    optimizer = _trained(
        part, faults.update_every_micro_batch_trainer, micro_batches[:4], make_adam(), k=2
    )
    result = run_schedule(part, optimizer, iteration=4, k=2)
    assert result.status == "fail" and "4 optimizer updates after 4 iterations, expected 2" in (
        result.message
    )


# -- chat-format parity -------------------------------------------------------------------------


def rows_of(kind, count=4):
    from lora_harness.text.data import default_prompts, default_rows

    texts = [r["text"] for r in default_rows(count)]
    prompts = default_prompts()
    if kind == "text":
        return [{"text": t} for t in texts]
    if kind == "completions":
        return [{"prompt": p, "completion": t} for p, t in zip(prompts, texts, strict=False)]
    return [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": t}]}
        for p, t in zip(prompts, texts, strict=False)
    ]


def run_chat(part, dataset, rows, inference, mask_prompt):
    from lora_harness.checks.chat_format_parity import ChatFormatProbe

    probe = ChatFormatProbe(dataset.process, rows, part.tokenizer, inference, mask_prompt)
    return all_checks()["chat_format_parity"]().run(Ctx(part, chat_format=probe))


@pytest.mark.parametrize(
    "kind, inference", [("chat", "chat"), ("completions", "chat"), ("text", "text")]
)
def test_chat_format_passes_on_mlx_lms_own_datasets(part, kind, inference):
    from types import SimpleNamespace

    from mlx_lm.tuner.datasets import create_dataset

    rows = rows_of(kind)
    mask = kind != "text"
    dataset = create_dataset(rows, part.tokenizer, SimpleNamespace(mask_prompt=mask))
    result = run_chat(part, dataset, rows, inference, mask)
    assert result.status == "pass", result.message


def test_chat_format_fails_on_an_offset_without_the_generation_prompt(part):
    rows = rows_of("chat")
    dataset = faults.offset_without_generation_prompt(rows, part.tokenizer)
    result = run_chat(part, dataset, rows, "chat", True)
    assert (
        result.status == "fail"
        and "assistant" in result.message
        and "trained on" in (result.message)
    )


def test_chat_format_fails_on_text_training_with_chat_prompts(part):
    from types import SimpleNamespace

    from mlx_lm.tuner.datasets import create_dataset

    from lora_harness.checks.chat_format_parity import default_inference

    rows = rows_of("text")
    dataset = create_dataset(rows, part.tokenizer, SimpleNamespace(mask_prompt=False))
    inference = default_inference(part.tokenizer)  # mlx_lm.generate's: the fixture has a template
    result = run_chat(part, dataset, rows, inference, False)
    assert inference == "chat"
    assert result.status == "fail" and "plain text" in result.message


def test_lora_harness_run_checks_its_own_trainer_with_grad_accumulation(tmp_path, fixture_cache):
    import json

    from lora_harness.cli import main

    names = ["grad_accumulation_matches_batch", "resume_continues_run"]
    args = ["run", "--grad-accumulation-steps", "2", "--out", str(tmp_path), "-q"]
    args += [item for name in names for item in ("--check", name)]
    code = main([*args, "--json", str(tmp_path / "r.json")])
    checks = {c["name"]: c for c in json.loads((tmp_path / "r.json").read_text())["checks"]}
    assert code == 0, {n: c["message"] for n, c in checks.items()}
    assert checks["grad_accumulation_matches_batch"]["evidence"]["trainer"] == "harness"
