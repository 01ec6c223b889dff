"""Suites (named lists of check classes), and running checks by name against one context."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lora_harness.checks as checks  # registers every check; suites name their classes
from lora_harness.core.checking import REGISTRY, Check, CheckResult
from lora_harness.core.errors import InputError
from lora_harness.core.validation import did_you_mean


def all_checks() -> dict[str, type[Check]]:
    """Every registered check; importing the checks package registers the built-in ones."""
    return dict(REGISTRY)


@dataclass(frozen=True)
class Suite:
    """A named list of check classes (their `name`s are the public ids: --check, reports)."""

    name: str
    summary: str
    checks: tuple[type[Check], ...]

    @property
    def names(self) -> list[str]:
        return [check.name for check in self.checks]


# One line per check: a new check is its file in checks/ and one line here.
STRUCTURE_SUITE = Suite(
    "structure",
    "counts and names only; no weights needed",
    (
        checks.lora_layer_count.LoRALayerCount,
        checks.trainable_array_count.TrainableArrayCount,
        checks.trainable_parameter_count.TrainableParameterCount,
        checks.trainable_keys_exact.TrainableKeysExact,
    ),
)

GATE_SUITE = Suite(
    "gate",
    "the whole pipeline on a short training run (default)",
    STRUCTURE_SUITE.checks
    + (
        checks.identity_at_init.IdentityAtInit,
        checks.gradient_tree_matches_trainable.GradientTreeMatchesTrainable,
        checks.optimizer_state_matches_trainable.OptimizerStateMatchesTrainable,
        checks.frozen_base_unchanged.FrozenBaseUnchanged,
        checks.adapters_changed.AdaptersChanged,
        checks.loss_finite_and_decreasing.LossFiniteAndDecreasing,
        checks.loss_covers_expected_tokens.LossCoversExpectedTokens,
        checks.first_loss_is_cross_entropy.FirstLossIsCrossEntropy,
        checks.training_examples_terminated.TrainingExamplesTerminated,
        checks.no_endoftext_spam.NoEndoftextSpam,
        checks.voice_score_baseline.VoiceScoreBaseline,
        checks.adapter_roundtrip.AdapterRoundtrip,
        checks.adapter_file_exact.AdapterFileExact,
        checks.adapter_applied.AdapterApplied,
        checks.fuse_equivalence.FuseEquivalence,
    ),
)

DPO_SUITE = Suite(
    "dpo",
    "the DPO trainer (use with --trainer dpo)",
    STRUCTURE_SUITE.checks
    + (
        checks.gradient_tree_matches_trainable.GradientTreeMatchesTrainable,
        checks.optimizer_state_matches_trainable.OptimizerStateMatchesTrainable,
        checks.frozen_base_unchanged.FrozenBaseUnchanged,
        checks.adapters_changed.AdaptersChanged,
        checks.reference_unchanged.ReferenceUnchanged,
        checks.preference_margin_increases.PreferenceMarginIncreases,
        checks.loss_covers_expected_tokens.LossCoversExpectedTokens,
    ),
)

DISTRIBUTED_SUITE = Suite(
    "distributed",
    "data-parallel ranks (use with --distributed)",
    STRUCTURE_SUITE.checks
    + (
        checks.frozen_base_unchanged.FrozenBaseUnchanged,
        checks.trainable_counts_match_across_ranks.TrainableCountsMatchAcrossRanks,
        checks.ranks_in_sync.RanksInSync,
        checks.distributed_matches_single.DistributedMatchesSingle,
    ),
)

DOCTOR_SUITE = Suite(
    "doctor",
    "an adapter folder made elsewhere (lora-harness doctor)",
    (
        checks.adapter_config_consistent.AdapterConfigConsistent,
        checks.adapter_tensors_finite.AdapterTensorsFinite,
        checks.lora_layer_count.LoRALayerCount,
        checks.trainable_array_count.TrainableArrayCount,
        checks.trainable_parameter_count.TrainableParameterCount,
        checks.adapter_file_exact.AdapterFileExact,
        checks.adapter_applied.AdapterApplied,
        checks.fuse_equivalence.FuseEquivalence,
        checks.no_endoftext_spam.NoEndoftextSpam,
        checks.voice_score_baseline.VoiceScoreBaseline,
    ),
)

SUITES: dict[str, Suite] = {
    s.name: s for s in (STRUCTURE_SUITE, GATE_SUITE, DPO_SUITE, DISTRIBUTED_SUITE, DOCTOR_SUITE)
}

# The suites' check names, for callers that run by name.
STRUCTURE = STRUCTURE_SUITE.names
GATE = GATE_SUITE.names
DPO = DPO_SUITE.names
DISTRIBUTED = DISTRIBUTED_SUITE.names
DOCTOR = DOCTOR_SUITE.names

DEFAULT_SUITE = "gate"


def catchers(fault: str, among: list[str] | None = None) -> list[str]:
    """The checks that declare they catch `fault` (their `catches`), in `among`'s order."""
    registry = all_checks()
    return [n for n in (among or registry) if n in registry and fault in registry[n].catches]


def select(suite: str | None, names: list[str] | None) -> list[str]:
    """Check names to run: `--check` names if given, else the suite's list."""
    registry = all_checks()
    if names:
        unknown = [n for n in names if n not in registry]
        if unknown:
            raise InputError(
                f"unknown check {unknown[0]!r}; {did_you_mean(unknown[0], registry)} "
                "('lora-harness list' shows every check)"
            )
        return list(dict.fromkeys(names))
    suite = suite or DEFAULT_SUITE
    if suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}; use one of {', '.join(SUITES)}")
    return SUITES[suite].names


def plan(ctx, names: list[str]) -> None:
    """Tell the context what must be built before training for these checks."""
    registry = all_checks()
    for name in names:
        if all(ctx.offers(cap) for cap in registry[name].requires):
            ctx.before_training.update(registry[name].before_training)


def run_checks(ctx, names: list[str], on_result: Callable[[CheckResult], None] | None = None):
    """Run each named check against `ctx`; returns the results in order."""
    plan(ctx, names)
    registry = all_checks()
    results = []
    for name in names:
        untrained = getattr(ctx, "training_seconds", 0) is None
        result = registry[name]().run(ctx)
        if untrained and getattr(ctx, "training_seconds", None) is not None:
            # The first check to ask for training should not carry its cost (and the
            # compile of the first step) as its own: report it apart.
            result.duration_s = round(max(result.duration_s - ctx.training_seconds, 0.0), 6)
            result.evidence["training_s_reported_apart"] = round(ctx.training_seconds, 6)
        results.append(result)
        if on_result:
            on_result(result)
    return results
