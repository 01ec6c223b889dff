"""Rules for values a user typed or wrote in a file, and the one-line errors they raise.

Every front end (CLI flags, pytest --lora- options, a YAML config, fleet.toml, adapter
configs) checks its values with these rules; the caller says how the user spelled each
value (`--rank`, `--lora-rank`, `rank in cfg.yaml`) so the error names what they typed.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lora_harness.core.errors import InputError

KIND_WORDS = {
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    bool: "true or false",
}
ITEM_WORDS = {int: "integers", float: "numbers", str: "strings"}


@dataclass(frozen=True)
class Rule:
    """What one value must be: its kind, its range (inclusive or exclusive), and a hint."""

    kind: type = str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # exclusive minimum
    below: float | None = None  # exclusive maximum
    also: tuple = ()  # values allowed outside the range, e.g. -1 for "all"
    items: type | None = None  # for lists: the kind of each item
    choices: tuple = ()  # for strings: the values allowed
    nonempty: bool = False  # for lists: at least one item
    hint: str = ""

    def bounds(self) -> str:
        if self.choices:
            return "one of " + ", ".join(str(c) for c in self.choices)
        parts = []
        if self.minimum is not None:
            parts.append(f">= {_number(self.minimum)}")
        if self.above is not None:
            parts.append(f"> {_number(self.above)}")
        if self.maximum is not None:
            parts.append(f"<= {_number(self.maximum)}")
        if self.below is not None:
            parts.append(f"< {_number(self.below)}")
        text = " and ".join(parts)
        if self.also:
            text += " (or " + ", ".join(str(v) for v in self.also) + ")"
        return text


def _number(value) -> str:
    """A bound as written: 4294967295, not 4.29497e+09; 0.5 as 0.5."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def check(name: str, value, rule: Rule, text_numbers: bool = False):
    """`value` as `rule.kind`, or InputError naming `name`; `text_numbers` lets "1e-5" be a number."""
    value = _kind(name, value, rule, text_numbers)
    if rule.kind in (int, float):
        _range(name, value, rule)
    return value


def _fail(name: str, value, rule: Rule, what: str):
    hint = f"; {rule.hint}" if rule.hint else ""
    raise InputError(f"{name} must be {what}, got {_show(value)}{hint}")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(name: str, value, rule: Rule, text_numbers: bool):
    wanted = KIND_WORDS.get(rule.kind, rule.kind.__name__)
    if rule.kind is bool:
        if not isinstance(value, bool):
            _fail(name, value, rule, wanted)
        return value
    if rule.kind in (int, float):
        if isinstance(value, str) and text_numbers:
            value = _number_from_text(name, value, rule)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, value, rule, wanted)
        if not math.isfinite(value):
            _fail(name, value, rule, "a finite number")
        if rule.kind is int:
            if isinstance(value, float) and not value.is_integer():
                _fail(name, value, rule, wanted)
            return int(value)
        return float(value)
    if rule.kind is list:
        if not isinstance(value, list):
            _fail(name, value, rule, wanted)
        item = rule.items or str
        items = ITEM_WORDS.get(item, f"{item.__name__} values")
        if any(not isinstance(v, item) or isinstance(v, bool) for v in value):
            _fail(name, value, rule, f"a list of {items}")
        if rule.nonempty and not value:
            _fail(name, value, rule, f"a non-empty list of {items}")
        return value
    if not isinstance(value, rule.kind):
        _fail(name, value, rule, wanted)
    if rule.kind is str and (not value.strip() or "\x00" in value):
        _fail(name, value, rule, "a non-empty string")
    if rule.choices and value not in rule.choices:
        _fail(name, value, rule, rule.bounds())
    return value


def _number_from_text(name: str, text: str, rule: Rule):
    # YAML 1.1 reads "1e-5" as a string; a number written as text is still a number.
    try:
        return float(text) if rule.kind is float else int(text)
    except ValueError:
        _fail(name, text, rule, KIND_WORDS[rule.kind])


def _range(name: str, value, rule: Rule) -> None:
    if value in rule.also:
        return
    low_ok = (rule.minimum is None or value >= rule.minimum) and (
        rule.above is None or value > rule.above
    )
    high_ok = (rule.maximum is None or value <= rule.maximum) and (
        rule.below is None or value < rule.below
    )
    if not (low_ok and high_ok):
        _fail(name, value, rule, rule.bounds())


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt `word`, if any is close enough to suggest."""
    matches = difflib.get_close_matches(str(word), sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    candidates = sorted(candidates)
    guess = nearest(word, candidates)
    if guess:
        return f"did you mean {guess!r}?"
    return "valid: " + ", ".join(candidates)


def check_keys(mapping: dict, known: Iterable[str], where: str) -> None:
    """Refuse keys that are not in `known`, naming the nearest valid one."""
    known = list(known)
    for key in mapping:
        if key not in known:
            raise InputError(f"{where}: unknown key {str(key)!r}; {did_you_mean(key, known)}")


def read_text(path: Path, what: str, remedy: str) -> str:
    """A text file's content, or one InputError for a missing, binary or folder path."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist; {remedy}")
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a folder, not a file; {remedy}")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start}); {remedy}")
    except PermissionError:
        raise InputError(f"{what} {path} cannot be read (permission denied); {remedy}")
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read ({exc.strerror}); {remedy}")
