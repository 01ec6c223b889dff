"""One host, start to end: connect, deploy, run, collect — each phase under its own deadline."""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.terminal import printable
from lora_harness.remote import collect, deploy, ring, shell
from lora_harness.remote.connection import HostFailure, KeepaliveMonitor, connect
from lora_harness.remote.inventory import Host, expand_home
from lora_harness.remote.names import folder_names, safe_name
from lora_harness.remote.phase import Phase
from lora_harness.remote.redact import Redactor

__all__ = ["LAUNCHER", "HostResult", "RemoteOptions", "run_host", "safe_name", "send_env"]
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

# As LAUNCHER, with the environment read from a 0600 file (then deleted) instead of argv:
# `env KEY=VALUE` would show a token to every user of the host in `ps` for the whole run.
ENV_LAUNCHER = (
    "import json,os,sys\n"
    "try: os.setsid()\n"
    "except PermissionError: pass\n"
    "with open(sys.argv[1]) as f: os.environ.update(json.load(f))\n"
    "os.unlink(sys.argv[1])\n"
    "open(sys.argv[2],'w').write(str(os.getpgrp()))\n"
    "os.execvp(sys.argv[3],sys.argv[3:])"
)


def send_env(client, sftp, run_dir: str, env: dict) -> str:
    """Write `env` into run_dir as a file only its owner can read; returns its path."""
    if shell.run(client, shell.quote(["mkdir", "-p", run_dir]), timeout=60).exit_status != 0:
        raise HostFailure("error", f"could not create {run_dir} on the host")
    path = f"{run_dir}/.env-{secrets.token_hex(4)}.json"
    with sftp.open(path, "w") as stream:
        stream.chmod(0o600)  # before a byte is written
        stream.write(json.dumps(env))
    return path


# Seconds each phase of a remote run may take, unless --<phase>-timeout says otherwise.
DEFAULT_DEADLINES_S = {"connect": 20, "deploy": 1800, "run": 7200, "collect": 600}


@dataclass
class RemoteOptions:
    run_args: list[str]
    out: Path
    known_hosts: list[str]
    trust_new: bool = False
    remote_python: str | None = None
    system_site_packages: bool = False
    remote_env: dict = field(default_factory=dict)
    timeouts: dict = field(default_factory=lambda: dict(DEFAULT_DEADLINES_S))
    echo: bool = True
    ring: ring.RingPlan | None = None  # --distributed: one rank per host
    collect_caps: dict = field(default_factory=dict)  # collect.Limits max_*_bytes
    redactor: Redactor = field(default_factory=Redactor)
    remember_keys: str | None = None  # known_hosts file newly trusted keys are added to
    folders: dict = field(default_factory=dict)  # host name -> its local/remote folder name

    def folder(self, host: Host) -> str:
        return self.folders.get(host.name) or folder_names([host.name])[host.name]

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
    collect: dict = field(default_factory=dict)
    bench: dict | None = None  # remote bench: the host's figures and measurements
    plan: dict | None = None  # remote plan: the host's verdict, peak, budget and advice


def run_host(host: Host, build, options: RemoteOptions, run_id: str, cancel) -> HostResult:
    result = HostResult(host.name, host.hostname, host=host.describe())
    client = None
    try:
        tic = time.monotonic()
        client, result.trusted_host_keys = connect(
            host,
            options.known_hosts,
            options.trust_new,
            options.timeouts["connect"],
            remember=options.remember_keys,
        )
        result.phase_durations["connect"] = round(time.monotonic() - tic, 3)
        _run_phases(client, host, build, options, run_id, cancel, result)
    except HostFailure as failure:
        result.status, result.message = failure.status, str(failure)
    except Exception as error:  # one host's crash must never stop the others
        result.status, result.message = "error", f"{error.__class__.__name__}: {error}"
    finally:
        result.message = options.redactor.text(result.message)
        if options.ring and "run" not in result.phase_durations:
            options.ring.abandon()  # failed before its rank started: release the others
        if client is not None:
            client.close()
    return result


def _run_phases(client, host, build, options, run_id, cancel, result) -> None:
    with KeepaliveMonitor(client) as keepalive:
        tic = time.monotonic()
        phase = Phase("deploy", options.timeouts["deploy"], cancel)
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(phase.remaining())
        work_dir = expand_home(host.work_dir, deploy.remote_home(client, phase))
        python = options.remote_python or host.python
        venv_python = deploy.ensure_venv(
            client, sftp, build, python, work_dir, options.system_site_packages, result.deploy,
            phase=phase,
        )  # fmt: skip
        result.phase_durations["deploy"] = round(time.monotonic() - tic, 3)
        if options.ring:
            options.ring.all_deployed(phase.remaining())
        # One folder per host: two inventory entries may share a machine and its work dir.
        run_dir = f"{work_dir}/runs/{run_id}/{options.folder(host)}"
        tic = time.monotonic()
        env_file = send_env(client, sftp, run_dir, _run_env(host, run_dir, options))
        completed = _run_remote(
            client, host, venv_python, run_dir, options, cancel, keepalive, env_file
        )
        result.phase_durations["run"] = round(time.monotonic() - tic, 3)
        tic = time.monotonic()
        # After Ctrl-C, bring home what there is, but do not keep the user waiting long.
        seconds = options.timeouts["collect"]
        limits = collect.Limits.within(
            min(seconds, 30) if cancel.is_set() else seconds, **options.collect_caps
        )
        local = options.out / options.folder(host)
        report, got = _collect_run(client, sftp, run_dir, local, limits)
        result.collect = got.describe()
        result.phase_durations["collect"] = round(time.monotonic() - tic, 3)
    result.exit_status = completed.exit_status
    _judge(result, completed, report, keepalive.dead.is_set(), options.redactor)


def _run_env(host, run_dir, options) -> dict:
    env = dict(options.remote_env)
    if options.ring:
        env.update(options.ring.env(host, run_dir))
    return env


def _run_remote(client, host, venv_python, run_dir, options, cancel, keepalive, env_file):
    command = [
        venv_python,
        "-m",
        "lora_harness",
        options.subcommand,
        "--out",
        f"{run_dir}/out",
        *options.run_args,
    ]
    prepare = f"mkdir -p {shell.quote([run_dir])} && cd {shell.quote([run_dir])} && "
    if options.ring:
        command.append("--distributed")
        prepare += f"printf %s {shell.quote([options.ring.hostfile])} > {ring.HOSTFILE} && "
    launch = [venv_python, "-c", ENV_LAUNCHER, env_file, f"{run_dir}/pid", *command]
    script = f"{prepare}exec {shell.quote(launch)}"
    redact = options.redactor.text
    echo = (
        (
            lambda line: print(
                f"[{printable(host.name)}] {printable(redact(line))}", file=sys.stderr, flush=True
            )
        )
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
    completed.interrupted = cancel.is_set() and completed.exit_status is None
    if completed.exit_status is None and client.get_transport().is_active():
        _kill_group(client, run_dir)
        completed.timed_out = not completed.interrupted
    return completed


def _kill_group(client, run_dir: str) -> None:
    pid = shell.quote([f"{run_dir}/pid"])
    script = (
        f'pgid=$(cat {pid} 2>/dev/null) && [ -n "$pgid" ] && '
        f"({shell.signal_group('TERM')}; sleep 2; {shell.signal_group('KILL')}) 2>/dev/null; true"
    )
    shell.run(client, script, timeout=15)


def _collect(client, sftp, run_dir: str, local_root: Path, timeout: float) -> Path | None:
    """The report path only, with the default caps (the signature callers had before)."""
    return _collect_run(client, sftp, run_dir, local_root, collect.Limits.within(timeout))[0]


def _get_tree(sftp, remote: str, local: Path, timeout: float = 600) -> None:
    """Copy a remote folder home with the hostile-name rules and default caps."""
    collect.get_tree(sftp, remote, local, collect.Limits.within(timeout))


def _collect_run(client, sftp, run_dir: str, local_root: Path, limits: collect.Limits):
    """Pull every run folder under run_dir/out into local_root/<run-id>/; returns the report
    path (or None) and what was copied and skipped."""
    got = collect.Collected()
    if not client.get_transport().is_active():
        got.incomplete = "the connection was lost before collecting"
        return None, got
    try:
        sftp.get_channel().settimeout(limits.remaining())
        run_ids = sftp.listdir(f"{run_dir}/out")
    except (OSError, EOFError, collect.Deadline) as error:
        got.incomplete = f"nothing to collect: {error}"
        return None, got
    report = None
    for run_id in run_ids:
        if not collect.plain_name(run_id):
            got.skipped.append(f"{run_dir}/out/{run_id!r}: not a plain file name")
            continue
        collect.get_tree(sftp, f"{run_dir}/out/{run_id}", local_root / run_id, limits, got)
        candidate = local_root / run_id / "report.json"
        if candidate.is_file() and not candidate.is_symlink():
            report = candidate
        if got.incomplete:
            break
    return report, got


def _judge(result: HostResult, completed, report, connection_dead: bool, redactor) -> None:
    """Status from the collected report, never from the command's stdout."""
    result.report = str(report) if report else None
    if getattr(completed, "interrupted", False):
        result.status = "interrupted"
        result.message = "interrupted (Ctrl-C); the remote process group was killed"
        return
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
        if result.collect.get("incomplete"):
            why += f" ({result.collect['incomplete']})"
        tail = completed.stderr_tail.strip().splitlines()[-1:] or [""]
        result.message = f"{why}: {tail[0]}".rstrip(": ")
        return
    try:
        document = redactor.scrub_report(report)
        if document.get("kind") == "bench":
            _judge_bench(result, completed, document)
            return
        if document.get("kind") == "plan":
            _judge_plan(result, completed, document)
            return
        verdict = document["summary"]["verdict"]
    except Exception as error:  # this host's bad report is this host's error only
        result.status = "error"
        result.message = f"its report cannot be read: {error.__class__.__name__}: {error}"
        return
    result.status = {"pass": "passed", "fail": "failed"}.get(verdict, "error")
    result.message = f"verdict {verdict}"
    expected = {"pass": 0, "fail": 1}.get(verdict)
    if completed.exit_status != expected:
        # The report is only half the truth: a harness that wrote it and then failed (a
        # --json path it could not write, a crash while saving a baseline) did not pass.
        tail = completed.stderr_tail.strip().splitlines()[-1:] or [""]
        result.status = "error"
        result.message = (
            f"verdict {verdict}, but the harness exited {completed.exit_status}: {tail[0]}"
        ).rstrip(": ")
    if result.collect.get("incomplete") or result.collect.get("skipped_count"):
        result.message += (
            f"; collect skipped {result.collect.get('skipped_count', 0)} item(s)"
            f"{': ' + result.collect['incomplete'] if result.collect.get('incomplete') else ''}"
        )


def _judge_bench(result: HostResult, completed, document: dict) -> None:
    """A bench has no verdict: it passed if it finished; its figures come home in fleet.json."""
    result.bench = {"figures": figures(document), "measurements": document["bench"]}
    finished = completed.exit_status == 0
    result.status = "passed" if finished else "error"
    result.message = "bench collected" if finished else f"bench exited {completed.exit_status}"


def _judge_plan(result: HostResult, completed, document: dict) -> None:
    """A plan passes where the run fits (or is tight) and fails where it does not."""
    plan = document["plan"]
    cheapest = (plan.get("advice") or {}).get("cheapest")
    result.plan = {
        "verdict": plan["verdict"],
        "predicted_peak_bytes": plan["prediction"]["peak_bytes"],
        "budget_bytes": plan["budget"]["bytes"],
        "budget_source": plan["budget"]["source"],
        "backend": plan["device"]["backend"],
        "cheapest_change": cheapest["change"] if cheapest else None,
        "calibration": plan.get("calibration"),
    }
    peak, budget = plan["prediction"]["peak_bytes"] / 1e9, (plan["budget"]["bytes"] or 0) / 1e9
    result.message = f"{plan['verdict']}: {peak:.1f} GB of {budget:.1f} GB"
    if cheapest:
        result.message += f"; cheapest change that fits: {cheapest['change']}"
    if completed.exit_status not in (0, 1):
        result.status, result.message = "error", f"plan exited {completed.exit_status}"
    else:
        result.status = "failed" if plan["verdict"] == "does not fit" else "passed"
