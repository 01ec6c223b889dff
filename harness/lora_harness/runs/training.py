"""What a training run leaves for the checks, as typed records, and the plain SFT run.

`TrainingOutcome` is shared by every trainer; a DPO run adds a `DPOOutcome`, a
distributed run a `RanksOutcome`. Checks read these fields; nothing travels in
string-keyed dictionaries.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import mlx.core as mx
from mlx.utils import tree_flatten

from lora_harness.core import fingerprint
from lora_harness.lora import recipe as recipes
from lora_harness.lora import trainer
from lora_harness.text.batches import ConsumedBatch


@dataclass
class DPOOutcome:
    """The reference model's log-probs before/after training and the preference margins."""

    reference_before: mx.array
    reference_after: mx.array
    reference_bit_identical: bool
    margin_before: float
    margin_after: float


@dataclass
class RanksOutcome:
    """Every rank's summary, all-gathered: what the distributed checks compare."""

    rank: int
    size: int
    adapter_digests: list[list[int]]
    base_changed: list[int]
    trainable_arrays: list[int]
    distance_to_single: float
    # Two single-process references summing the shards in opposite orders, and the bound.
    single_noise_floor: float = 0.0
    allowed_distance: float | None = None


@dataclass
class TrainingOutcome:
    """What the short training run left behind for the checks to read."""

    metrics: list[dict]
    gradient_keys: set[str]
    optimizer_state_keys: set[str]
    base_before: dict
    base_after: dict
    adapter_before: dict
    adapter_after: dict
    optimizer: object = field(repr=False, default=None)
    # One record per step of the batch the compiled step was handed (after truncation,
    # padding and the loss offsets): what the data and loss-coverage checks judge.
    batches: list[ConsumedBatch] = field(repr=False, default_factory=list)
    dpo: DPOOutcome | None = None
    ranks: RanksOutcome | None = None


def fingerprints(model) -> tuple[dict, dict]:
    """(adapter, base) digests of every parameter of `model`."""
    adapter, base = recipes.split_adapter_and_base(model)
    return fingerprint.fingerprint(adapter), fingerprint.fingerprint(base)


def outcome(model, before, metrics, gradient_keys, optimizer, batches=()) -> TrainingOutcome:
    """What a training run leaves for the checks, with `before` = fingerprints() at the start."""
    adapter_after, base_after = fingerprints(model)
    return TrainingOutcome(
        metrics=metrics,
        gradient_keys=gradient_keys,
        optimizer_state_keys=optimizer_state_keys(optimizer),
        base_before=before[1],
        base_after=base_after,
        adapter_before=before[0],
        adapter_after=adapter_after,
        optimizer=optimizer,
        batches=list(batches),
    )


def optimizer_state_keys(optimizer) -> set[str]:
    """Parameter names that hold optimizer state (Adam's m/v live under each name)."""
    keys = set()
    for name, _ in tree_flatten(optimizer.state):
        owner, _, _ = name.rpartition(".")
        if owner:
            keys.add(owner)
    return keys


def train_sft(model_part, step_callbacks=()) -> TrainingOutcome:
    """`iters` compiled steps on the probe batch with the recipe's own steps."""
    model = model_part.lora_model
    before = fingerprints(model)
    gradient_keys: set[str] = set()  # filled when the compiled step is traced
    optimizer = trainer.make_optimizer(model, model_part.lora, model_part.recipe)
    batches = [model_part.probe_batch] * model_part.lora.iters
    consumed: list[ConsumedBatch] = []
    metrics = trainer.train(
        model,
        optimizer,
        batches,
        model_part.recipe,
        callbacks=step_callbacks,
        gradient_keys=gradient_keys,
        batch_log=consumed,
        grad_accumulation_steps=model_part.lora.grad_accumulation_steps,
    )
    examples = model_part.probe_examples  # every step trains on the probe batch
    consumed = [dataclasses.replace(b, examples=examples) for b in consumed]
    return outcome(model, before, metrics, gradient_keys, optimizer, consumed)
