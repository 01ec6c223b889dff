"""The trainer-behaviour checks, each on the harness's trainer (clean), a coded fault, and
mlx-lm's own trainer: gradient accumulation, learning-rate schedule, resume, chat format."""

from __future__ import annotations

import pytest
from mlx_lm.tuner.trainer import iterate_batches

from lora_harness.guard import accumulation as acc
from lora_harness.guard import trainer_faults as faults
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
