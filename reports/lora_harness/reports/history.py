"""Per-machine run history: one JSON line per run, keyed by a hardware fingerprint.

The fingerprint tells two Macs apart without a serial number: chip/CPU, memory, OS and a
hash of the machine id (/etc/machine-id on Linux, IOPlatformUUID on macOS). pytest-
benchmark's machine id cannot tell two identical Mac Studios apart; this one can.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

from lora_harness.core.terminal import printable
from lora_harness.reports.json_report import json_safe


def machine_id() -> str:
    """A stable per-machine id, hashed so no serial or UUID leaves the machine."""
    raw = ""
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["ioreg", "-rd1", "-c", "IOPlatformExpertDevice"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout
            raw = next(
                (line.split('"')[-2] for line in out.splitlines() if "IOPlatformUUID" in line), ""
            )
        except (OSError, subprocess.SubprocessError, StopIteration, IndexError):
            raw = ""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        if not raw and os.path.exists(path):
            raw = Path(path).read_text().strip()
    return hashlib.sha256((raw or platform.node()).encode()).hexdigest()[:12]


def hardware_fingerprint(environment: dict) -> str:
    parts = [environment.get(k) for k in ("cpu", "memory_bytes", "os", "machine_id")]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def summary_of(report: dict) -> dict:
    """The few numbers a trend is drawn from."""
    metrics = report.get("metrics", {}).get("summary", {})
    generation = report.get("generation") or {}
    return {
        "run_id": report["run"]["id"],
        "finished_at": report["run"]["finished_at"],
        "verdict": report["summary"]["verdict"],
        "model": report["model"]["spec"],
        "git_sha": report["environment"].get("git_sha"),
        "tokens_per_second": metrics.get("tokens_per_second"),
        "peak_memory_gb": metrics.get("peak_memory_gb"),
        "last_loss": metrics.get("last_loss"),
        "voice_score": generation.get("trained_voice_score"),
    }


def history_file(folder: Path, environment: dict) -> Path:
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in environment.get("host", "host"))
    return Path(folder) / f"{host}-{hardware_fingerprint(environment)}.jsonl"


def append(folder: Path, report: dict) -> Path:
    """Add this run's line; a line left unfinished before (a full disk, a kill) stays alone."""
    path = history_file(folder, report["environment"])
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(json_safe(summary_of(report)), sort_keys=True, allow_nan=False) + "\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = "\n" + line
        os.write(fd, line.encode())  # one write of one short line: whole, or cut at the end
    finally:
        os.close(fd)
    return path


# A line of the history is data from disk: these fields must be what summary_of writes.
TEXT_FIELDS = ("run_id", "finished_at", "verdict", "model", "git_sha")
NUMBER_FIELDS = ("tokens_per_second", "peak_memory_gb", "last_loss", "voice_score")
PLAUSIBLE = 1e12  # beyond any loss, score, GB or tokens/s: a corrupted number


def load(folder: Path, environment: dict, last: int = 20) -> list[dict]:
    """The machine's last runs; a line that is not a run summary is skipped with a warning,
    never fatal (a kill or a full disk mid-append leaves half a line)."""
    path = history_file(folder, environment)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return []
    except OSError as error:
        _warn(f"history {path} cannot be read ({error.strerror}); no trends this time")
        return []
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        entry, problem = _entry(line)
        if problem:
            _warn(f"{path}:{number} skipped ({problem}); later runs keep appending")
        else:
            entries.append(entry)
    return entries[-last:]


def _entry(line: str) -> tuple[dict | None, str | None]:
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not valid JSON: a truncated or corrupted line"
    if not isinstance(entry, dict):
        return None, "not a JSON object"
    for key in TEXT_FIELDS:
        if not isinstance(entry.get(key, ""), (str, type(None))):
            return None, f"{key} is not text"
    for key in NUMBER_FIELDS:
        value = entry.get(key)
        if value in ("nan", "inf", "-inf"):  # a NaN loss, as json_safe wrote it
            entry[key] = None
        elif value is not None and not _plausible(value):
            return None, f"{key} is not a plausible number"
    return entry, None


def _plausible(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and abs(value) < PLAUSIBLE
    )


def _warn(message: str) -> None:
    print(f"lora-harness: warning: {printable(message)}", file=sys.stderr)
