"""The canonical run report: build it, make it JSON-safe, write it atomically, read it back."""

from __future__ import annotations

import json
import math
import os
import statistics
import tempfile
from pathlib import Path

from lora_harness.core.errors import InputError

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("run.schema.json")


def summarise(results: list[dict]) -> dict:
    """Counts by status and the verdict: fail beats error beats pass."""
    counts = {status: 0 for status in ("pass", "warn", "fail", "error", "skip")}
    for result in results:
        counts[result["status"]] += 1
    verdict = "fail" if counts["fail"] else "error" if counts["error"] else "pass"
    return {**counts, "total": len(results), "verdict": verdict}


def metrics_summary(steps: list[dict]) -> dict:
    """Run-level numbers from the per-step metrics; the first step holds compile time."""
    if not steps:
        return {}
    later = steps[1:] or steps
    seconds = sum(s["step_time_s"] for s in later)
    tokens = sum(s["loss_tokens"] for s in later)
    return {
        "steps": len(steps),
        "first_loss": steps[0]["loss"],
        "last_loss": steps[-1]["loss"],
        "first_step_s": steps[0]["step_time_s"],
        # tracing and kernel builds: the first step beyond a typical later one
        "compile_s": max(
            steps[0]["step_time_s"] - statistics.median(s["step_time_s"] for s in later), 0.0
        ),
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "peak_memory_gb": max(s["peak_memory_gb"] for s in steps),
    }


def json_safe(value):
    """Replace NaN/inf (invalid JSON) by strings, recursively, so a NaN loss is still reported."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = sorted(value) if isinstance(value, set) else value
        return [json_safe(v) for v in items]
    return value


def dumps(document: dict) -> str:
    return json.dumps(json_safe(document), indent=2, allow_nan=False) + "\n"


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(path: Path) -> dict:
    """Read a report, refusing files that are not reports of a version we understand."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path} not found; pass a report.json written by lora-harness run")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(
            f"{path} is not valid JSON; pass a report.json written by lora-harness run"
        )
    if not isinstance(document, dict) or "schema_version" not in document:
        raise InputError(f"{path} is not a lora-harness report (no schema_version)")
    major = str(document["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise InputError(
            f"{path} has schema_version {document['schema_version']}, this harness reads "
            f"{SCHEMA_VERSION}; re-render it with a matching lora-harness version"
        )
    return document


def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
