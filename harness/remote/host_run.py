"""One host, start to end: connect, deploy, run, collect — each phase under its own deadline."""

from __future__ import annotations

import json
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.remote import deploy, ring, shell
from lora_harness.remote.connection import HostFailure, KeepaliveMonitor, connect
from lora_harness.remote.inventory import Host
from lora_harness.reports.bench_figures import figures

# Starts the command as leader of a new process group and records its pid, so a deadline or
# Ctrl-C can kill the whole group from a second channel (exec_command's timeout does not, #2510).
LAUNCHER = (
    "import os,sys\n"
    "try: os.setsid()\n"
    "except PermissionError: pass  # already a group leader (sshd made the session)\n"
    "open(sys.argv[1],'w').write(str(os.getpgrp()))\n"
    "os.execvp(sys.argv[2],sys.argv[2:])"
)


@dataclass
class RemoteOptions:
    run_args: list[str]
    out: Path
    known_hosts: list[str]
    trust_new: bool = False
    remote_python: str | None = None
    system_site_packages: bool = False
    remote_env: dict = field(default_factory=dict)
    timeouts: dict = field(
        default_factory=lambda: {"connect": 20, "deploy": 1800, "run": 7200, "collect": 600}
    )
    echo: bool = True
    ring: ring.RingPlan | None = None  # --distributed: one rank per host
    subcommand: str = "run"  # what runs on each host: run, or bench (remote bench)


@dataclass
class HostResult:
    name: str
    hostname: str
    status: str = "error"
    phase_durations: dict = field(default_factory=dict)
    report: str | None = None
    message: str = ""
    trusted_host_keys: list = field(default_factory=list)
    deploy: dict = field(default_factory=dict)
    host: dict = field(default_factory=dict)
    exit_status: int | None = None
    bench: dict | None = None  # remote bench: the host's figures and measurements


def run_host(host: Host, build, options: RemoteOptions, run_id: str, cancel) -> HostResult:
    result = HostResult(host.name, host.hostname, host=host.describe())
    client = None
    try:
        tic = time.monotonic()
        client, result.trusted_host_keys = connect(
            host, options.known_hosts, options.trust_new, options.timeouts["connect"]
        )
        result.phase_durations["connect"] = round(time.monotonic() - tic, 3)
        _run_phases(client, host, build, options, run_id, cancel, result)
    except HostFailure as failure:
        result.status, result.message = failure.status, str(failure)
    except Exception as error:  # one host's crash must never stop the others
        result.status, result.message = "error", f"{error.__class__.__name__}: {error}"
    finally:
        if options.ring and "run" not in result.phase_durations:
            options.ring.abandon()  # failed before its rank started: release the others
        if client is not None:
            client.close()
    return result


def _run_phases(client, host, build, options, run_id, cancel, result) -> None:
    with KeepaliveMonitor(client) as keepalive:
        tic = time.monotonic()
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(options.timeouts["deploy"])
        work_dir = host.work_dir.replace("~", deploy.remote_home(client), 1)
        python = options.remote_python or host.python
        venv_python = deploy.ensure_venv(
            client, sftp, build, python, work_dir, options.system_site_packages, result.deploy
        )
        result.phase_durations["deploy"] = round(time.monotonic() - tic, 3)
        if options.ring:
            options.ring.all_deployed(options.timeouts["deploy"])
        # One folder per host: two inventory entries may share a machine and its work dir.
        run_dir = f"{work_dir}/runs/{run_id}/{safe_name(host.name)}"
        tic = time.monotonic()
        completed = _run_remote(client, host, venv_python, run_dir, options, cancel, keepalive)
        result.phase_durations["run"] = round(time.monotonic() - tic, 3)
        tic = time.monotonic()
        report = _collect(
            client, sftp, run_dir, options.out / host.name, options.timeouts["collect"]
        )
        result.phase_durations["collect"] = round(time.monotonic() - tic, 3)
    result.exit_status = completed.exit_status
    _judge(result, completed, report, keepalive.dead.is_set())


def _run_remote(client, host, venv_python, run_dir, options, cancel, keepalive):
    command = [
        venv_python,
        "-m",
        "lora_harness",
        options.subcommand,
        "--out",
        f"{run_dir}/out",
        *options.run_args,
    ]
    env = dict(options.remote_env)
    prepare = f"mkdir -p {shell.quote([run_dir])} && cd {shell.quote([run_dir])} && "
    if options.ring:
        env.update(options.ring.env(host, run_dir))
        command.append("--distributed")
        prepare += f"printf %s {shell.quote([options.ring.hostfile])} > {ring.HOSTFILE} && "
    env_args = [f"{k}={v}" for k, v in env.items()]
    launch = ["env", *env_args, venv_python, "-c", LAUNCHER, f"{run_dir}/pid", *command]
    script = f"{prepare}exec {shell.quote(launch)}"
    echo = (
        (lambda line: print(f"[{host.name}] {line}", file=sys.stderr, flush=True))
        if options.echo
        else None
    )
    completed = shell.run(
        client,
        script,
        timeout=options.timeouts["run"],
        on_line=echo,
        is_dead=lambda: cancel.is_set() or keepalive.dead.is_set(),
    )
    if completed.exit_status is None and client.get_transport().is_active():
        _kill_group(client, run_dir)
        completed.timed_out = True
    return completed


def safe_name(name: str) -> str:
    """A host name as one local folder name (inventory names may hold '/', spaces, quotes)."""
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in name).strip(".")
    return cleaned or "host"


def _kill_group(client, run_dir: str) -> None:
    pid = shell.quote([f"{run_dir}/pid"])
    script = (
        f'pgid=$(cat {pid} 2>/dev/null) && [ -n "$pgid" ] && '
        f"(kill -TERM -- -$pgid; sleep 2; kill -KILL -- -$pgid) 2>/dev/null; true"
    )
    shell.run(client, script, timeout=30)


def _collect(client, sftp, run_dir: str, local_root: Path, timeout: float) -> Path | None:
    """Pull every run folder under run_dir/out into local_root/<run-id>/; returns the report path."""
    if not client.get_transport().is_active():
        return None
    sftp.get_channel().settimeout(timeout)
    try:
        run_ids = sftp.listdir(f"{run_dir}/out")
    except OSError:
        return None
    report = None
    for run_id in run_ids:
        _get_tree(sftp, f"{run_dir}/out/{run_id}", local_root / run_id)
        if (local_root / run_id / "report.json").exists():
            report = local_root / run_id / "report.json"
    return report


def _get_tree(sftp, remote: str, local: Path) -> None:
    local.mkdir(parents=True, exist_ok=True)
    for entry in sftp.listdir_attr(remote):
        source = f"{remote}/{entry.filename}"
        if stat.S_ISDIR(entry.st_mode):
            _get_tree(sftp, source, local / entry.filename)
        else:
            sftp.get(source, str(local / entry.filename))


def _judge(result: HostResult, completed, report: Path | None, connection_dead: bool) -> None:
    """Status from the collected report, never from the command's stdout."""
    result.report = str(report) if report else None
    if completed.timed_out:
        result.status = "timeout"
        result.message = "the run passed its deadline; the remote process group was killed"
        return
    if report is None:
        result.status = "error"
        why = (
            "the connection was lost"
            if connection_dead or completed.exit_status is None
            else (f"the harness exited {completed.exit_status} without a report")
        )
        tail = completed.stderr_tail.strip().splitlines()[-1:] or [""]
        result.message = f"{why}: {tail[0]}".rstrip(": ")
        return
    document = json.loads(report.read_text())
    if document.get("kind") == "bench":
        _judge_bench(result, completed, document)
        return
    verdict = document["summary"]["verdict"]
    result.status = {"pass": "passed", "fail": "failed"}.get(verdict, "error")
    result.message = f"verdict {verdict}"


def _judge_bench(result: HostResult, completed, document: dict) -> None:
    """A bench has no verdict: it passed if it finished; its figures come home in fleet.json."""
    result.bench = {"figures": figures(document), "measurements": document["bench"]}
    finished = completed.exit_status == 0
    result.status = "passed" if finished else "error"
    result.message = "bench collected" if finished else f"bench exited {completed.exit_status}"
