"""What a front end was given, as one typed object: the CLI and the pytest plugin hand runs a
`Given`, never their own dict or namespace.

Its fields are made from the option declarations (runs/options.py), so a new option is a
new attribute without a second list to keep in step; None means "not given" (so a -c YAML
value or a default shows through).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lora_harness.core import declared
from lora_harness.core.declared import Spell
from lora_harness.lora.lora_config import LoRAConfig, learning_rate_for
from lora_harness.models.sources import declared_config
from lora_harness.runs import options, validate
from lora_harness.text.generation import GenerationSettings

# `run`'s own flags that the checks of a combination read (validate.check_run).
RUN_COMMAND_FIELDS = [("save_baseline", Path | None, None), ("history", Path | None, None)]


def _annotation(option: options.Option):
    if option.action == "store_true":
        return bool | None
    if option.action == "append":
        return list[str] | None
    kind = option.rule.kind if option.rule is not None else option.type
    return (kind if isinstance(kind, type) else Any) | None


def _fields() -> list[tuple]:
    made = {}
    for option in options.ALL_OPTIONS:
        default = dataclasses.field(default=option.default)
        made.setdefault(option.dest, (option.dest, _annotation(option), default))
    for name, kind, default in RUN_COMMAND_FIELDS:
        made.setdefault(name, (name, kind, dataclasses.field(default=default)))
    return list(made.values())


class _Reading:
    """How a Given is made and read."""

    @classmethod
    def of(cls, values) -> Given:
        """From an argparse namespace or a mapping of option dests; other keys are not options."""
        values = vars(values) if not isinstance(values, Mapping) else values
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def values(self) -> dict:
        """Option dest -> value, for the validators that also check other commands' flags."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def lora_flags(self) -> dict:
        """The LoRAConfig fields given as flags (each overrides the -c YAML)."""
        names = declared.declarations(LoRAConfig)
        return {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}

    def lora_config(self, spell: Spell = validate.cli_flag) -> LoRAConfig:
        """Defaults < YAML config < explicit flags, each value checked by its declaration."""
        merged: dict = {}
        if self.config:
            merged.update(validate.read_config(self.config))  # checked in the YAML's words
        merged.update(declared.check_values(LoRAConfig, self.lora_flags(), spell))
        if "learning_rate" not in merged:
            rank = merged.get("rank", LoRAConfig.rank)
            merged["learning_rate"] = learning_rate_for(declared_config(self.model), rank)
        return LoRAConfig.checked(merged, spell)

    def generation_settings(self) -> GenerationSettings:
        settings = GenerationSettings(
            prompts_path=self.prompts,
            references_path=self.voice_references,
            scorer=self.voice_scorer,
            baseline_path=self.baseline,
            tolerance=self.voice_tolerance,
        )
        if self.max_tokens is not None:  # checked by options.RULES, as every flag is
            settings.max_tokens = self.max_tokens
        return settings


Given = dataclasses.make_dataclass("Given", _fields(), bases=(_Reading,), frozen=True)


def given(values) -> Given:
    """`values` as a Given: itself, or made from a namespace or a mapping of option dests."""
    return values if isinstance(values, Given) else Given.of(values)


def lora_config_from(values, spell: Spell = validate.cli_flag) -> LoRAConfig:
    """The LoRAConfig of option values (a Given, a namespace or a mapping of dests)."""
    return given(values).lora_config(spell)
