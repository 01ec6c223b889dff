"""Long training on a host, detached: survives the controller disconnecting or sleeping.

`start` launches `lora-harness train` under nohup in its own session with a pidfile, and
confirms after a short grace period that it is still alive; `monitor` follows the host's
metrics.jsonl over SFTP until the process ends; `fetch` brings the run folder home. A run
that died says so, with its exit status and the last lines of its log.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.terminal import printable
from lora_harness.remote import collect, deploy, shell
from lora_harness.remote.connection import HostFailure, connect
from lora_harness.remote.host_run import ENV_LAUNCHER, RemoteOptions, send_env
from lora_harness.remote.inventory import Host, expand_home
from lora_harness.remote.names import check_run_id
from lora_harness.remote.phase import Phase
from lora_harness.runs.long_train import METRICS_FILE

START_GRACE_S = 15.0
EXIT_FILE = "exit_status"
LOG_FILE = "train.log"
HARNESS_CODES = (1, 2, 3, 5)  # the remote harness's own exit codes pass through


@dataclass
class RunState:
    running: bool
    exit_status: int | None = None  # written by the host when the process ended
    adapter: bool = False
    log_tail: list[str] = field(default_factory=list)
    launched: bool = True  # the launcher wrote its pid file (it takes a moment to start)

    @property
    def ok(self) -> bool:
        return self.running or (self.adapter and self.exit_status in (0, None))

    def code(self) -> int:
        if self.ok:
            return 0
        return self.exit_status if self.exit_status in HARNESS_CODES else 4

    def describe(self) -> str:
        if self.running:
            return "training still running"
        if self.ok:
            return "training finished"
        if self.exit_status is None:
            return "training is not running and left no adapter"
        return f"training exited {self.exit_status} without an adapter"

    def report(self, host: Host, out=sys.stderr) -> None:
        """Say a dead run is dead, with the lines that tell why."""
        if self.ok:
            return
        name = printable(host.name)
        print(f"[{name}] {self.describe()}; last log lines:", file=out, flush=True)
        for line in self.log_tail or ["(empty log)"]:
            print(f"[{name}]   {printable(line)}", file=out, flush=True)


def _connect(host: Host, options: RemoteOptions):
    return connect(
        host,
        options.known_hosts,
        options.trust_new,
        options.timeouts["connect"],
        remember=options.remember_keys,
    )[0]


def _run_dir(client, host: Host, run_id: str) -> str:
    return f"{expand_home(host.work_dir, deploy.remote_home(client))}/runs/{check_run_id(run_id)}"


def start(
    host: Host,
    build,
    options: RemoteOptions,
    run_id: str,
    train_args: list[str],
    grace_s: float = START_GRACE_S,
) -> str:
    """Deploy, start training detached, confirm it is alive; returns the host's run folder."""
    client = _connect(host, options)
    try:
        phase = Phase("deploy", options.timeouts["deploy"])
        sftp = client.open_sftp()
        work_dir = expand_home(host.work_dir, deploy.remote_home(client, phase))
        python = options.remote_python or host.python
        venv_python = deploy.ensure_venv(
            client, sftp, build, python, work_dir, options.system_site_packages, {}, phase=phase
        )
        run_dir = f"{work_dir}/runs/{check_run_id(run_id)}"
        env_file = send_env(client, sftp, run_dir, dict(options.remote_env))
        _launch(client, venv_python, run_dir, env_file, train_args)
        state = _wait_alive(client, sftp, run_dir, grace_s)
        if not state.ok:
            state.report(host)
            failure = HostFailure("error", f"{state.describe()} right after it started")
            failure.exit_code = state.code()  # the remote's own code (2: bad arguments)
            raise failure
        return run_dir
    finally:
        client.close()


def _launch(client, venv_python, run_dir, env_file, train_args) -> None:
    command = [
        venv_python, "-m", "lora_harness", "train",
        "--adapter-path", f"{run_dir}/adapters", "-q", *train_args,
    ]  # fmt: skip
    launch = [venv_python, "-c", ENV_LAUNCHER, env_file, f"{run_dir}/pid", *command]
    # The wrapper records the exit status, so monitor and fetch can say how the run ended.
    wrapper = f'"$@"; echo $? > {EXIT_FILE}'
    script = (
        f"mkdir -p {shell.quote([run_dir])} && cd {shell.quote([run_dir])} && "
        f"rm -f {EXIT_FILE} && nohup sh -c {shell.quote([wrapper])} sh {shell.quote(launch)} "
        f"> {LOG_FILE} 2>&1 < /dev/null &"
    )
    if shell.run(client, script, timeout=60).exit_status != 0:
        raise HostFailure("error", "could not start the training process")


def _wait_alive(client, sftp, run_dir: str, grace_s: float) -> RunState:
    """How the run stands once it died, wrote its first step, or outlived the grace period:
    a process that is merely alive may still be importing and about to fail."""
    end = time.monotonic() + grace_s
    while True:
        state = state_of(client, sftp, run_dir)
        if time.monotonic() >= end:
            return state
        if not state.running:
            if state.launched or state.exit_status is not None:
                return state
            time.sleep(0.5)  # no pid file yet: the launcher's Python is still starting
            continue
        try:
            sftp.stat(f"{run_dir}/adapters/{METRICS_FILE}")
            return state  # training steps are being written
        except OSError:
            time.sleep(0.5)


def state_of(client, sftp, run_dir: str) -> RunState:
    folder = shell.quote([run_dir])
    script = (
        f"cd {folder} 2>/dev/null || exit 3; "
        f"pgid=$(cat pid 2>/dev/null); echo pid=$pgid; "
        f'if [ -n "$pgid" ] && {shell.signal_group("0")}; '
        f"then echo running; else sleep 0.2; echo stopped; fi; "
        f"echo status=$(cat {EXIT_FILE} 2>/dev/null); "
        f"test -e adapters/adapters.safetensors && echo adapter; "
        f"echo ---; tail -n 15 {LOG_FILE} 2>/dev/null"
    )
    done = shell.run(client, script, timeout=30, parse=True)
    if done.exit_status == 3:
        raise HostFailure("error", f"no run folder {run_dir} on the host; check the run id")
    head, _, tail = done.stdout_tail.partition("---\n")
    lines = head.splitlines()
    status = next((ln[7:] for ln in lines if ln.startswith("status=")), "")
    pid = next((ln[4:] for ln in lines if ln.startswith("pid=")), "")
    return RunState(
        launched=pid.strip().isdigit(),
        running="running" in lines,
        exit_status=int(status) if status.strip().isdigit() else None,
        adapter="adapter" in lines,
        log_tail=[ln for ln in tail.splitlines() if ln.strip()][-10:],
    )


def monitor(
    host: Host, options: RemoteOptions, run_id: str, poll_s: float = 2.0, out=sys.stderr
) -> RunState:
    """Print each new training step until the process ends; returns how it ended."""
    client = _connect(host, options)
    try:
        sftp = client.open_sftp()
        run_dir = _run_dir(client, host, run_id)
        offset, partial = 0, ""
        while True:
            state = state_of(client, sftp, run_dir)
            offset, partial = _print_new_steps(
                sftp, f"{run_dir}/adapters/{METRICS_FILE}", offset, partial, host, out
            )
            if not state.running:
                break
            time.sleep(poll_s)
        state.report(host, out)
        return state
    finally:
        client.close()


def _print_new_steps(
    sftp, path: str, offset: int, partial: str, host: Host, out
) -> tuple[int, str]:
    try:
        with sftp.open(path) as stream:
            stream.seek(offset)
            chunk = stream.read(4 * 1024 * 1024).decode(errors="replace")
    except OSError:
        return offset, partial  # not written yet
    offset += len(chunk.encode())
    *lines, partial = (partial + chunk).split("\n")
    for line in lines:
        try:
            step = json.loads(line)
            text = (
                f"step {step['iteration']} loss {step['loss']:.4f} "
                f"{step['tokens_per_second'] or 0:.0f} tok/s"
            )
        except (ValueError, KeyError, TypeError):
            continue  # a line the host wrote that is not a step: not ours to crash on
        print(f"[{printable(host.name)}] {text}", file=out, flush=True)
    return offset, partial


def fetch(host: Host, options: RemoteOptions, run_id: str) -> tuple[Path, RunState, dict]:
    """Bring the run folder home (what there is, if it died); returns where, its state and
    what collect copied and skipped."""
    client = _connect(host, options)
    try:
        sftp = client.open_sftp()
        run_dir = _run_dir(client, host, run_id)
        state = state_of(client, sftp, run_dir)
        target = options.out / options.folder(host) / run_id
        limits = collect.Limits.within(options.timeouts["collect"], **options.collect_caps)
        got = collect.get_tree(sftp, run_dir, target, limits)
        return target, state, got.describe()
    finally:
        client.close()
