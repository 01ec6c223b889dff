"""The remote runner tells the truth against a real sshd (#26): a login shell that prints a
banner (with escape sequences) around every command, and a host harness that exits non-zero
after writing its report."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support import sshd
from tests.support.remote import STRUCTURE, connection_args, ensure_host_venv, remote, write_fleet

needs_sshd = pytest.mark.skipif(
    not sshd.available(), reason="needs OpenSSH sshd and root (.ci/run installs it)"
)
pytestmark = [pytest.mark.remote, pytest.mark.wheel]
BANNER = 'Welcome to studio \x1b]0;pwned\x07\x1b[2J -- last login $(date) {"a": 1}'


@pytest.fixture
def banner_host(keys, tmp_path):
    host = sshd.SshdHost.start(tmp_path / "sshd-banner", keys / "authorized_keys", banner=BANNER)
    yield host
    host.stop()


@needs_sshd
def test_a_login_banner_pollutes_no_parsed_value(cli, banner_host, hosts, keys, work_dir, tmp_path):
    from lora_harness.remote import deploy
    from lora_harness.remote.connection import connect
    from lora_harness.remote.inventory import Host

    known = tmp_path / "known_hosts"
    known.write_text(banner_host.known_hosts_line() + "\n")
    target = Host("h", "127.0.0.1", user="root", port=banner_host.port,
                  identity_files=[str(keys / "user_key")])  # fmt: skip
    client, _ = connect(target, [str(known)], False, 10)
    try:
        assert deploy.remote_home(client) == "/root"
    finally:
        client.close()
    ensure_host_venv(cli, hosts, keys, work_dir, tmp_path)
    fleet, known = write_fleet(tmp_path, [banner_host], keys, work_dir)
    # Not --json -: the host's stderr is echoed, banner and all.
    args = connection_args(fleet, known)
    result = cli("remote", "run", *args, "--json", "fleet.json", *STRUCTURE, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "fleet.json").read_text())
    assert [h["status"] for h in summary["hosts"]] == ["passed"]
    assert "\x1b" not in result.stderr and "\\x1b]0;pwned" in result.stderr
    # Nothing was created from the banner's text, in the work dir or the home.
    assert not [p for p in work_dir.rglob("*Welcome*")]


@needs_sshd
def test_a_host_whose_harness_fails_after_its_report_is_an_error(
    cli, hosts, keys, work_dir, tmp_path
):
    ensure_host_venv(cli, hosts, keys, work_dir, tmp_path)
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    # /proc takes no new file: the host's harness cannot write --json there.
    result = remote(cli, fleet, known, run_args=[*STRUCTURE, "--json", "/proc/r.json"])
    (host,) = result.json()["hosts"]
    assert result.returncode == 4, result.stderr
    assert host["status"] == "error" and "exited 2" in host["message"], host["message"]


@needs_sshd
def test_detached_training_on_a_banner_host_is_reported_running(
    cli, banner_host, keys, work_dir, tmp_path
):
    """The start's status check reads the pid file and the marker-framed state lines: a
    login shell that prints around every command must not turn a live run into a dead one."""
    fleet, known = write_fleet(tmp_path, [banner_host], keys, work_dir)
    common = connection_args(fleet, known, out="home")
    started = cli("remote", "train", *common, "--", "--iters", "30", timeout=600)
    assert started.returncode == 0, started.stderr
    assert "not running" not in started.stderr
    run_id = started.stdout.strip()
    followed = cli("remote", "monitor", *common, run_id, timeout=600)
    assert followed.returncode == 0, followed.stderr
    assert "[studio-0] step 30 loss" in followed.stderr
    fetched = cli("remote", "fetch", *common, run_id)
    assert fetched.returncode == 0, fetched.stderr
    adapters = tmp_path / "home" / "studio-0" / run_id / "adapters"
    assert (adapters / "adapters.safetensors").exists()


@pytest.fixture
def banner_client(banner_host, keys, tmp_path):
    from lora_harness.remote.connection import connect
    from lora_harness.remote.inventory import Host

    known = tmp_path / "known_hosts"
    known.write_text(banner_host.known_hosts_line() + "\n")
    target = Host("h", "127.0.0.1", user="root", port=banner_host.port,
                  identity_files=[str(keys / "user_key")])  # fmt: skip
    client, _ = connect(target, [str(known)], False, 10)
    yield client
    client.close()


@pytest.fixture
def live_group(tmp_path):
    """A process in its own session, its group id in run/pid, as the launcher leaves it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    (run_dir / "pid").write_text(str(os.getpgid(process.pid)))
    yield run_dir, process
    if process.poll() is None:
        process.kill()
        process.wait()


@needs_sshd
def test_a_live_run_reads_running_and_a_timed_out_one_is_killed_on_a_dash_shell_host(
    banner_client, live_group
):
    """The banner host runs commands with /bin/sh (dash on Debian), whose `kill` takes
    `kill -0 -- -PGID`'s `--` for a pid: the run read as stopped and was never killed."""
    from lora_harness.remote import detached, host_run

    run_dir, process = live_group
    state = detached.state_of(banner_client, banner_client.open_sftp(), str(run_dir))
    assert state.running and state.launched, state
    host_run._kill_group(banner_client, str(run_dir))
    assert process.wait(timeout=10) is not None
    state = detached.state_of(banner_client, banner_client.open_sftp(), str(run_dir))
    assert not state.running


def test_the_start_waits_for_the_launchers_pid_file(monkeypatch):
    """Right after the launch the pid file may not exist yet (Python still starting): that
    is not a dead run."""
    from lora_harness.remote import detached

    states = iter([detached.RunState(running=False, launched=False)] * 3
                  + [detached.RunState(running=True)])  # fmt: skip
    monkeypatch.setattr(detached, "state_of", lambda *a: next(states))
    monkeypatch.setattr(detached.time, "sleep", lambda s: None)

    class Sftp:
        def stat(self, path):
            return True

    assert detached._wait_alive(None, Sftp(), "/run", grace_s=60).running
