"""Small text helpers for messages a person reads."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """'1 check', '2 checks', '0 tensors'."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
