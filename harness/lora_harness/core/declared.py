"""Settings declared once, on the dataclass field: its help, its default and the Rule it obeys.

Every front end derives from these declarations: argparse flags (type, choices, help with
the bounds and default), the YAML (-c) reader, adapter configs and the Python API. So a bad
value gets the same sentence wherever it was written; only the name differs (`--rank`,
`lora_parameters.rank in c.yaml`, `rank`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lora_harness.core.validation import Rule, check

Spell = Callable[[str], str]


def setting(
    default,
    help: str,
    rule: Rule | None = None,
    *,
    parse: Callable[[str], object] | None = None,
    default_text: str | None = None,
):
    """A dataclass field with its declaration; `parse` turns text (a flag, a YAML string) into it."""
    metadata = {"help": help, "rule": rule, "parse": parse, "default_text": default_text}
    return dataclasses.field(default=default, metadata=metadata)


def declarations(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if "help" in f.metadata}


def rules(cls) -> dict[str, Rule]:
    return {name: f.metadata["rule"] for name, f in declarations(cls).items() if f.metadata["rule"]}


def help_text(cls, name: str) -> str:
    """The field's help, its bounds and its default: what `--help` says of it."""
    spec = declarations(cls)[name]
    default = spec.metadata["default_text"] or spec.default
    return describe(spec.metadata["help"], spec.metadata["rule"], default)


def describe(text: str, rule: Rule | None, default=None) -> str:
    """Help text with the rule's numeric bounds and the default, e.g. "LoRA rank r; >= 1 (default 8)"."""
    if rule is not None and rule.kind in (int, float) and rule.bounds():
        text += f"; {rule.bounds()}"
    if default is None or (rule is not None and rule.kind is bool):  # a switch: off unless given
        return text
    return f"{text} (default {default})"


def check_value(cls, name: str, value, spelt: str, text: bool = True):
    """One value for field `name`, checked and converted; `text`: as written (a flag, YAML)."""
    spec = declarations(cls)[name]
    if text and isinstance(value, str) and spec.metadata["parse"] is not None:
        value = spec.metadata["parse"](value)
    rule = spec.metadata["rule"]
    if value is None and spec.default is None:  # None is the declared "not set"
        return None
    return check(spelt, value, rule, text_numbers=text) if rule else value


def check_values(cls, values: dict, spell: Spell) -> dict:
    """Each of `values` (field -> value) checked; the first bad one raises InputError."""
    return {name: check_value(cls, name, value, spell(name)) for name, value in values.items()}


def checked(cls, values: dict, spell: Spell):
    """An instance of `cls` from field values, each checked by its declaration."""
    return cls(**check_values(cls, values, spell))


def check_instance(obj, spell: Spell) -> None:
    """Every declared field of `obj` obeys its rule (a value set in Python, say)."""
    for name in declarations(type(obj)):
        check_value(type(obj), name, getattr(obj, name), spell(name), text=False)
