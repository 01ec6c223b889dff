"""Remote-runner test helpers: fleet files for loopback sshd hosts and the `remote run` call.

The fixtures that start the hosts (keys, work_dir, hosts) live in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support import sshd

# Set by the work_dir fixture: the wheelhouse the session downloaded once.
REMOTE = {}

STRUCTURE = ["--", "--model", "shape:qwen2.5-0.5b", "--suite", "structure"]


def write_fleet(tmp_path, hosts, keys, work_dir, names=None, key="user_key") -> tuple[Path, Path]:
    known = tmp_path / "known_hosts"
    known.write_text("".join(h.known_hosts_line() + "\n" for h in hosts))
    entries = []
    for index, host in enumerate(hosts):
        name = (names or [f"studio-{i}" for i in range(len(hosts))])[index]
        entries.append(
            f'[[hosts]]\nname = {json.dumps(name)}\nhostname = "127.0.0.1"\nport = {host.port}\n'
            f'user = "root"\nidentity_file = "{keys / key}"\npython = "{sshd.base_python()}"\n'
            f'work_dir = "{work_dir}"\n'
        )
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("\n".join(entries))
    return fleet, known


def connection_args(fleet, known, out="out") -> list[str]:
    """The flags every remote action in these tests shares."""
    cache = os.environ["LORA_HARNESS_CACHE"]
    return [
        "--hosts",
        str(fleet),
        "--known-hosts",
        str(known),
        "--wheelhouse",
        str(REMOTE["wheelhouse"]),
        "--remote-env",
        f"LORA_HARNESS_CACHE={cache}",
        "--out",
        out,
    ]


def remote(cli, fleet, known, *extra, run_args=STRUCTURE, timeout=600):
    return cli(
        "remote",
        "run",
        *connection_args(fleet, known),
        "--json",
        "-",
        *extra,
        *run_args,
        timeout=timeout,
    )


def ensure_host_venv(cli, hosts, keys, work_dir, tmp_path) -> None:
    """The shared host venv, built by whichever remote test came first (else built here)."""
    if not list(work_dir.glob("venvs/*/.harness-*")):
        (tmp_path / "warm").mkdir(exist_ok=True)
        fleet, known = write_fleet(tmp_path / "warm", hosts(1), keys, work_dir)
        assert remote(cli, fleet, known).returncode == 0


def statuses(result) -> dict:
    return {h["name"]: h["status"] for h in result.json()["hosts"]}
