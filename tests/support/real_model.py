"""The real model's test helpers: the pirate rows, short prompts, a run context."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

from lora_harness.models.sources import resolve

ROOT = Path(__file__).resolve().parents[2]
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


def context(spec: str, tmp_path: Path, recipe=None, max_tokens: int = 12, **lora_changes):
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
        max_tokens=max_tokens,
    )
    return RunContext(
        source, lora, recipe=recipe or CORRECT, data_dir=str(PIRATE), generation_settings=settings
    )


def run(ctx, names):
    from lora_harness.runs import suites

    return {r.name: r for r in suites.run_checks(ctx, names)}
