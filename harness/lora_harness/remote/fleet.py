"""Many hosts at once in a bounded pool; one host's failure never stops the others."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.validation import check
from lora_harness.remote import inventory
from lora_harness.remote.host_run import HostResult, RemoteOptions, run_host
from lora_harness.remote.inventory import HOST_RULES, Host

SUMMARY_HOST_KEYS = (
    "name",
    "hostname",
    "user",
    "port",
    "python",
    "work_dir",
    "labels",
    "ips",
    "trust_new",
)  # fmt: skip  (what Host.describe() writes)

STATUSES = (
    "passed",
    "failed",
    "error",
    "unreachable",
    "auth_failed",
    "hostkey_rejected",
    "timeout",
    "interrupted",
)
FLEET_SCHEMA_VERSION = "1.0"


def run_fleet(
    hosts: list[Host], build, options: RemoteOptions, parallel: int, run_id: str
) -> list[HostResult]:
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(run_host, host, build, options, run_id, cancel) for host in hosts]
        try:
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            # Every phase sees this at its next step: remote groups and waiters are killed,
            # hosts not started end `interrupted`, and the summary is still written.
            print(
                "lora-harness: interrupted; stopping the hosts' remote processes "
                "(Ctrl-C twice more to quit at once)",
                file=sys.stderr,
                flush=True,
            )
            cancel.set()
            if options.ring:
                options.ring.abandon()
            # Kept to the end of the process: a Ctrl-C while the summary is written must
            # not lose it.
            signal.signal(signal.SIGINT, _StopNow())
            return [future.result() for future in futures]


class _StopNow:
    """While the hosts stop: one more Ctrl-C is noted, a third quits at once (the hosts'
    waiters still end, as their channels close with this process)."""

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame):
        self.count += 1
        if self.count >= 2:
            os._exit(130)
        print("lora-harness: still stopping the hosts", file=sys.stderr, flush=True)


def summary(results: list[HostResult]) -> dict:
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    infrastructure = len(results) - counts["passed"] - counts["failed"]
    verdict = "failed" if counts["failed"] else "infrastructure" if infrastructure else "passed"
    return {**counts, "hosts": len(results), "verdict": verdict}


def exit_code(fleet_summary: dict) -> int:
    """0 all passed; 1 a host failed its checks (a regression); 4 only infrastructure trouble."""
    return {"passed": 0, "failed": 1, "infrastructure": 4}[fleet_summary["verdict"]]


def document(results: list[HostResult], run: dict) -> dict:
    return {
        "schema_version": FLEET_SCHEMA_VERSION,
        "kind": "fleet",
        "run": run,
        "hosts": [asdict(r) for r in results],
        "summary": summary(results),
    }


def hosts_to_retry(path: Path, whole_ring: bool = False) -> list[Host]:
    """Hosts that did not pass in an earlier fleet summary; for a ring, every host if any
    failed (a rank cannot run without its peers)."""
    if Path(path).exists() and not Path(path).is_file():  # a FIFO would never end
        raise InputError(f"--retry-failed {path} is not a regular file")
    try:
        earlier = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        raise InputError(f"--retry-failed {path} is not a readable fleet summary JSON")
    if not isinstance(earlier, dict) or earlier.get("kind") != "fleet":
        raise InputError(f"--retry-failed {path} is not a fleet summary (kind != fleet)")
    try:
        failed = [h for h in earlier["hosts"] if h["status"] != "passed"]
        chosen = earlier["hosts"] if whole_ring and failed else failed
        entries = [h["host"] for h in chosen]
    except (KeyError, TypeError, AttributeError) as error:
        raise InputError(f"--retry-failed {path}: a host entry is malformed ({error})")
    return [_retry_host(entry, f"--retry-failed {path}") for entry in entries]


def _retry_host(entry, where: str) -> Host:
    """A host as Host.describe() wrote it, checked as a fleet TOML entry is: the summary is
    data from disk. Only the fields describe() writes are read, so a proxy_command or an
    identity file planted in it never becomes a local command or a key to offer."""
    if not isinstance(entry, dict) or not isinstance(entry.get("hostname"), str):
        raise InputError(f"{where}: a host entry is malformed (no hostname)")
    fields = {k: entry[k] for k in SUMMARY_HOST_KEYS if entry.get(k) is not None}
    for key, value in fields.items():
        check(f"{where}: {key}", value, HOST_RULES[key])
    return inventory.host_from(fields, where).check(where)


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
