"""Per-machine run history: one JSON line per run, keyed by a hardware fingerprint.

The fingerprint tells two Macs apart without a serial number: chip/CPU, memory, OS and a
hash of the machine id (/etc/machine-id on Linux, IOPlatformUUID on macOS). pytest-
benchmark's machine id cannot tell two identical Mac Studios apart; this one can.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

from lora_harness.core.errors import InputError


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
    path = history_file(folder, report["environment"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as stream:  # appends of one short line are atomic enough here
        stream.write(json.dumps(summary_of(report), sort_keys=True) + "\n")
    return path


def load(folder: Path, environment: dict, last: int = 20) -> list[dict]:
    path = history_file(folder, environment)
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise InputError(f"{path}:{number} is not valid JSON; remove the broken line")
    return entries[-last:]
