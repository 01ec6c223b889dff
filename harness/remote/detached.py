"""Long training on a host, detached: survives the controller disconnecting or sleeping.

`start` launches `lora-harness train` under nohup in its own session with a pidfile;
`monitor` follows the host's metrics.jsonl over SFTP until the process ends; `fetch`
brings the run folder home.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from lora_harness.remote import deploy, shell
from lora_harness.remote.connection import HostFailure, connect
from lora_harness.remote.host_run import LAUNCHER, RemoteOptions, _get_tree, safe_name
from lora_harness.remote.inventory import Host
from lora_harness.runs.long_train import METRICS_FILE


def _work_dir(client, host: Host) -> str:
    return host.work_dir.replace("~", deploy.remote_home(client), 1)


def start(host: Host, build, options: RemoteOptions, run_id: str, train_args: list[str]) -> str:
    """Deploy, then start training detached; returns the host's run folder."""
    client, _ = connect(host, options.known_hosts, options.trust_new, options.timeouts["connect"])
    try:
        sftp = client.open_sftp()
        work_dir = _work_dir(client, host)
        python = options.remote_python or host.python
        venv_python = deploy.ensure_venv(
            client, sftp, build, python, work_dir, options.system_site_packages, {}
        )
        run_dir = f"{work_dir}/runs/{run_id}"
        command = [
            venv_python,
            "-m",
            "lora_harness",
            "train",
            "--adapter-path",
            f"{run_dir}/adapters",
            "-q",
            *train_args,
        ]
        env = [f"{k}={v}" for k, v in options.remote_env.items()]
        launch = ["env", *env, venv_python, "-c", LAUNCHER, f"{run_dir}/pid", *command]
        script = (
            f"mkdir -p {shell.quote([run_dir])} && cd {shell.quote([run_dir])} && "
            f"nohup {shell.quote(launch)} > train.log 2>&1 < /dev/null &"
        )
        if shell.run(client, script, timeout=60).exit_status != 0:
            raise HostFailure("error", "could not start the training process")
        return run_dir
    finally:
        client.close()


def _running(client, run_dir: str) -> bool:
    pid = shell.quote([f"{run_dir}/pid"])
    return shell.run(client, f"kill -0 -- -$(cat {pid}) 2>/dev/null", timeout=30).exit_status == 0


def monitor(
    host: Host, options: RemoteOptions, run_id: str, poll_s: float = 2.0, out=sys.stderr
) -> bool:
    """Print each new training step until the process ends; True when the adapter was written."""
    client, _ = connect(host, options.known_hosts, options.trust_new, options.timeouts["connect"])
    try:
        sftp = client.open_sftp()
        run_dir = f"{_work_dir(client, host)}/runs/{run_id}"
        offset, partial = 0, ""
        while True:
            running = _running(client, run_dir)
            offset, partial = _print_new_steps(
                sftp, f"{run_dir}/adapters/{METRICS_FILE}", offset, partial, host, out
            )
            if not running:
                break
            time.sleep(poll_s)
        try:
            sftp.stat(f"{run_dir}/adapters/adapters.safetensors")
            return True
        except OSError:
            return False
    finally:
        client.close()


def _print_new_steps(
    sftp, path: str, offset: int, partial: str, host: Host, out
) -> tuple[int, str]:
    try:
        with sftp.open(path) as stream:
            stream.seek(offset)
            chunk = stream.read().decode(errors="replace")
    except OSError:
        return offset, partial  # not written yet
    offset += len(chunk.encode())
    *lines, partial = (partial + chunk).split("\n")
    for line in lines:
        step = json.loads(line)
        print(
            f"[{host.name}] step {step['iteration']} loss {step['loss']:.4f} "
            f"{step['tokens_per_second'] or 0:.0f} tok/s",
            file=out,
            flush=True,
        )
    return offset, partial


def fetch(host: Host, options: RemoteOptions, run_id: str) -> Path:
    client, _ = connect(host, options.known_hosts, options.trust_new, options.timeouts["connect"])
    try:
        sftp = client.open_sftp()
        target = options.out / safe_name(host.name) / run_id
        _get_tree(sftp, f"{_work_dir(client, host)}/runs/{run_id}", target)
        return target
    finally:
        client.close()
