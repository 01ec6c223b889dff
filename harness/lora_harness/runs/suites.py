"""Named lists of checks, and running them against one context."""

from __future__ import annotations

from collections.abc import Callable

from lora_harness.core.checking import REGISTRY, Check, CheckResult
from lora_harness.core.errors import InputError
from lora_harness.core.validation import did_you_mean


def all_checks() -> dict[str, type[Check]]:
    """Every registered check; importing the checks package registers the built-in ones."""
    import lora_harness.checks  # noqa: F401  (registers on import)

    return dict(REGISTRY)


STRUCTURE = [
    "lora_layer_count",
    "trainable_array_count",
    "trainable_parameter_count",
    "trainable_keys_exact",
]

GATE = STRUCTURE + [
    "identity_at_init",
    "gradient_tree_matches_trainable",
    "optimizer_state_matches_trainable",
    "frozen_base_unchanged",
    "adapters_changed",
    "loss_finite_and_decreasing",
    "loss_covers_expected_tokens",
    "training_examples_terminated",
    "no_endoftext_spam",
    "voice_score_baseline",
    "adapter_roundtrip",
    "adapter_file_exact",
    "adapter_applied",
    "fuse_equivalence",
]

DPO = STRUCTURE + [
    "gradient_tree_matches_trainable",
    "optimizer_state_matches_trainable",
    "frozen_base_unchanged",
    "adapters_changed",
    "reference_unchanged",
    "preference_margin_increases",
    "loss_covers_expected_tokens",
]

DISTRIBUTED = STRUCTURE + [
    "frozen_base_unchanged",
    "trainable_counts_match_across_ranks",
    "ranks_in_sync",
    "distributed_matches_single",
]

DOCTOR = [
    "adapter_config_consistent",
    "adapter_tensors_finite",
    "lora_layer_count",
    "trainable_array_count",
    "trainable_parameter_count",
    "adapter_file_exact",
    "adapter_applied",
    "fuse_equivalence",
    "no_endoftext_spam",
    "voice_score_baseline",
]

SUITES: dict[str, dict] = {
    "structure": {"checks": STRUCTURE, "summary": "counts and names only; no weights needed"},
    "gate": {"checks": GATE, "summary": "the whole pipeline on a short training run (default)"},
    "dpo": {"checks": DPO, "summary": "the DPO trainer (use with --trainer dpo)"},
    "distributed": {
        "checks": DISTRIBUTED,
        "summary": "data-parallel ranks (use with --distributed)",
    },
    "doctor": {
        "checks": DOCTOR,
        "summary": "an adapter folder made elsewhere (lora-harness doctor)",
    },
}

DEFAULT_SUITE = "gate"


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
    return list(SUITES[suite]["checks"])


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
