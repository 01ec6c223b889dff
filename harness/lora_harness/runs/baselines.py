"""Saved baselines: a measured voice score (and key metrics) to hold later runs against.

File format (JSON, versioned):

    {"schema_version": 1,
     "baselines": {"<model>|<data>|<scorer>": {"voice_score": 0.74, "metrics": {...},
                                               "saved_at": "...", "run_id": "..."}}}

The key ties a score to what produced it: the model identity (spec and a hash of its
config.json), the training data fingerprint and the scorer, so a baseline is never
compared with a run it does not describe.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import exclusive_lock, write_atomic

FORMAT_VERSION = 1


def baseline_key(model_spec: str, config: dict, data_fingerprint: str, scorer: str) -> str:
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return f"{model_spec}@{config_hash}|data:{data_fingerprint}|scorer:{scorer}"


def read(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {"schema_version": FORMAT_VERSION, "baselines": {}}
    try:
        document = json.loads(path.read_text())
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, a 5,000-digit number
        raise InputError(f"baseline file {path} is not valid JSON; fix or delete it")
    except IsADirectoryError:
        raise InputError(f"baseline file {path} is a folder; pass a file")
    if (
        not isinstance(document, dict)
        or document.get("schema_version") != FORMAT_VERSION
        or not isinstance(document.get("baselines"), dict)
    ):
        raise InputError(
            f"baseline file {path} is not a version-{FORMAT_VERSION} lora-harness baseline file"
        )
    for key, entry in document["baselines"].items():
        if problem := _entry_problem(entry):
            raise InputError(
                f"baseline file {path}: the entry {str(key)[:60]!r} {problem}; fix or delete it"
            )
    return document


def _entry_problem(entry) -> str | None:
    """What makes a stored entry unusable as a bar, or None: checked before any run uses it."""
    if not isinstance(entry, dict):
        return "is not an object"
    if not _finite_number(entry.get("voice_score")):
        return f"has voice_score {entry.get('voice_score')!r}, not a finite number"
    spread = entry.get("voice_score_spread", 0.0)
    if not _finite_number(spread) or spread < 0:
        return f"has voice_score_spread {spread!r}, not a finite number >= 0"
    if not isinstance(entry.get("metrics", {}), dict):
        return "has metrics that are not an object"
    return None


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def lookup(path: Path, key: str) -> dict | None:
    return read(path)["baselines"].get(key)


def save(path: Path, key: str, entry: dict) -> None:
    """Store `entry` under `key`; refuses NaN/inf anywhere (JSON has none; a NaN bar fails all)."""
    if bad := _non_finite(entry):
        raise InputError(f"--save-baseline: not saved, {bad} is not finite; fix the run first")
    path = Path(path)
    # Read, merge and write under one lock: two runs saving at once both keep their entry.
    lock = path.with_name(f".{path.name}.lock")
    if lock.is_dir():
        raise InputError(f"--save-baseline: {lock} (its lock file) is a folder; remove it")
    with exclusive_lock(lock):
        document = read(path)
        document["baselines"][key] = entry
        write_atomic(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def _non_finite(value, where: str = "the baseline") -> str | None:
    """The dotted name of the first NaN/inf number in `value`, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if found := _non_finite(item, f"{where}.{key}" if where != "the baseline" else str(key)):
            return found
    return None
