"""The canonical run report: build it, make it JSON-safe, write it atomically, read it back."""

from __future__ import annotations

import functools
import json
import math
import statistics
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.reports.schema_check import first_problem

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


RUN_KINDS = ("run", "selftest", "bench")
MAKE_ONE = "pass a report.json written by lora-harness run"


def load(path: Path, kinds: tuple[str, ...] = (*RUN_KINDS, "plan", "fleet")) -> dict:
    """Read a report, refusing files that are not reports of a kind and version we understand."""
    document = _read_json(Path(path))
    if not isinstance(document, dict) or "schema_version" not in document:
        raise InputError(f"{path} is not a lora-harness report (no schema_version); {MAKE_ONE}")
    major = str(document["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise InputError(
            f"{path} has schema_version {document['schema_version']}, this harness reads "
            f"{SCHEMA_VERSION}; re-render it with a matching lora-harness version"
        )
    kind = document.get("kind")
    if kind not in kinds:
        raise InputError(f"{path} is {_kind_name(kind)}; here {_wanted(kinds)}")
    problem = _fleet_problem(document) if kind == "fleet" else first_problem(document, schema())
    if problem:
        raise InputError(f"{path} is not a complete {kind} report ({problem}); {MAKE_ONE}")
    return document


def _read_json(path: Path):
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would never end
        raise InputError(f"{path} is not a regular file; {MAKE_ONE}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} not found; {MAKE_ONE}")
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; pass its report.json")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{path} is not valid JSON; {MAKE_ONE}")
    except (ValueError, OSError) as error:  # a NUL in the name, a FIFO's EINVAL, EACCES...
        reason = getattr(error, "strerror", None) or str(error)
        raise InputError(f"{path} cannot be read ({reason}); {MAKE_ONE}")


def _kind_name(kind) -> str:
    if kind == "fleet":
        return "a fleet summary (lora-harness remote run)"
    return f"a report of unknown kind {kind!r}"


def _wanted(kinds) -> str:
    if "fleet" in kinds:
        return "pass a run report or a fleet summary"
    return "pass the hosts' report.json files (each host's 'report' in the fleet summary)"


def _fleet_problem(document: dict) -> str | None:
    if not isinstance(document.get("run"), dict) or not isinstance(document["run"].get("id"), str):
        return "run.id is missing"
    hosts = document.get("hosts")
    if not isinstance(hosts, list):
        return "hosts is not a list"
    for index, host in enumerate(hosts):
        if not isinstance(host, dict) or not all(
            isinstance(host.get(k), str) for k in ("name", "status")
        ):
            return f"hosts[{index}] needs a name and a status"
        if host.get("report") is not None and not isinstance(host["report"], str):
            return f"hosts[{index}].report is not a path"
    if not isinstance(document.get("summary"), dict):
        return "summary is missing"
    return None


@functools.cache
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())
