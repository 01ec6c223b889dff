# ruff: noqa: F811  (the sshd fixtures are shared with test_remote and used as parameters)
"""The remote runner against hostile hosts, odd names, secrets and stuck deploys (#15).

SFTP hostility is served by a real paramiko SFTP server that lists impossible names
(tests/support/sftp_stub.py) and by a real sshd whose run folder holds a symlink to /dev/zero, a
FIFO and a tree 1,100 folders deep. Everything else runs against real sshd on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lora_harness.core.errors import InputError
from lora_harness.remote import collect, names
from lora_harness.remote.connection import HostFailure, connect
from lora_harness.remote.inventory import Host, expand_home, load_fleet, parse_host
from tests.support import sftp_stub, sshd
from tests.support.remote import (
    STRUCTURE,
    connection_args,
    ensure_host_venv,
    remote,
    write_fleet,
)

_skip_without_sshd = pytest.mark.skipif(
    not sshd.available(), reason="needs OpenSSH sshd and root (.ci/run installs it)"
)


def needs_sshd(test):
    """A test against real sshd hosts on loopback (those given work_dir deploy the wheel)."""
    return pytest.mark.remote(_skip_without_sshd(test))


# --- collect: every remote name and file is hostile ------------------------------------


def test_collect_from_a_hostile_sftp_server_stays_inside_and_bounded(tmp_path):
    sshd.keygen(tmp_path / "host_key")
    sftp, stop = sftp_stub.serve(str(tmp_path / "host_key"))
    target = tmp_path / "home" / "run"
    try:
        limits = collect.Limits.within(20, max_file_bytes=1 << 20, max_run_bytes=4 << 20)
        sftp_stub.ENTRIES.pop("slow")  # the deadline has its own test
        try:
            got = collect.get_tree(sftp, "/run", target, limits)
        finally:
            sftp_stub.ENTRIES["slow"] = (sftp_stub.REG, "slow")
    finally:
        stop()
    assert (target / "ok.txt").read_bytes() == b"fine"
    assert not (tmp_path / "home" / "escape.txt").exists()
    assert not list(tmp_path.rglob("escape.txt"))
    skipped = "\n".join(got.skipped)
    for reason in ("'../escape.txt'", "lora-harness-abs-escape", "zero: symlink"):
        assert reason in skipped
    assert "fifo: special file" in skipped
    assert "liar: grew past the byte cap" in skipped and not (target / "liar").exists()
    assert f"deeper than {collect.MAX_DEPTH} levels" in skipped
    assert got.bytes == 4 and got.files == 1


def test_collect_deadline_holds_on_a_file_that_trickles(tmp_path):
    sshd.keygen(tmp_path / "host_key")
    sftp, stop = sftp_stub.serve(str(tmp_path / "host_key"))
    try:
        got = collect.get_tree(sftp, "/run", tmp_path / "home", collect.Limits.within(3))
    finally:
        stop()
    assert "deadline" in got.incomplete or "timeout" in got.incomplete.lower()


@pytest.mark.wheel
@needs_sshd
def test_fetch_skips_symlinks_fifos_and_deep_trees_in_a_real_run_folder(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    run_id = f"20260101T000000Z-hostile-{os.getpid()}"
    planted = work_dir / "runs" / run_id
    (planted / "adapters").mkdir(parents=True)
    (planted / "train.log").write_text("loss went nowhere\n")
    (planted / "adapters" / "adapter_config.json").write_text("{}")
    (planted / "zero").symlink_to("/dev/zero")
    (planted / "etc").symlink_to("/etc")
    os.mkfifo(planted / "fifo")
    deep = [planted]
    for _ in range(1100):  # os.makedirs itself recurses once per level
        deep.append(deep[-1] / "d")
        deep[-1].mkdir()
    try:
        result = cli(
            "remote", "fetch", *connection_args(fleet, known, out="home"), run_id, timeout=300
        )
    finally:
        for folder in reversed(deep[1:]):  # shutil.rmtree would recurse too
            folder.rmdir()
    assert "Traceback" not in result.stderr, result.stderr
    home = tmp_path / "home" / "studio-0" / run_id
    assert (home / "train.log").exists() and (home / "adapters" / "adapter_config.json").exists()
    assert not (home / "zero").exists() and not (home / "etc").exists()
    assert not (home / "fifo").exists()
    assert "zero: symlink" in result.stderr and "fifo: special file" in result.stderr
    assert "deeper than" in result.stderr
    # Not running, no adapter: a dead run, told with its log, and the exit code follows.
    assert result.returncode == 4 and "loss went nowhere" in result.stderr


def test_collect_caps_and_names_are_checked():
    from lora_harness.cli.remote_cmd import _size

    assert _size("512M") == 512 * 1024**2 and _size("4G") == 4 * 1024**3 and _size("10") == 10
    assert not collect.plain_name("../x") and not collect.plain_name("/abs")
    assert not collect.plain_name("..") and not collect.plain_name("a\\b")
    assert collect.plain_name("report.json")


# --- names: host names, hostnames, users, ports, run ids --------------------------------


def test_local_folders_come_from_sanitised_unique_names():
    folders = names.folder_names(["../../x", ".._.._x", "studio/1", "Studio_1", ""])
    assert all("/" not in f and f not in ("", ".", "..") for f in folders.values())
    assert len(set(map(str.lower, folders.values()))) == 5


@pytest.mark.parametrize(
    "hostname",
    ["127.0.0.1:22 -oProxyCommand=touch${IFS}/tmp/PWNED", "-oProxyCommand=x", "a b", "a;b", ""],
)
def test_hostnames_that_are_not_data_are_refused_at_load(tmp_path, hostname):
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f"[[hosts]]\nhostname = {json.dumps(hostname)}\n")
    with pytest.raises(InputError, match="not a host name|non-empty string"):
        load_fleet(fleet)


def test_users_ports_and_host_specs_are_checked():
    with pytest.raises(InputError, match="not a user name"):
        parse_host("-oProxyCommand=x@127.0.0.1")
    with pytest.raises(InputError, match="port"):
        parse_host("root@127.0.0.1:22 -oProxyCommand=x")
    with pytest.raises(InputError, match="port"):
        Host("x", "127.0.0.1", port=70000).check("t")
    assert parse_host("ml@studio-1.local:2222").port == 2222


def test_proxyjump_cannot_be_injected_through_a_hostname(cli, tmp_path):
    pwned = tmp_path / "PWNED"
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  ProxyJump jump.invalid\n")
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[[hosts]]\nhostname = "127.0.0.1:22 -oProxyCommand=touch${{IFS}}{pwned}"\n')
    result = cli("remote", "run", "--hosts", str(fleet), "--ssh-config", str(config), *STRUCTURE)
    assert result.returncode == 2 and "not a host name" in result.stderr
    assert "Traceback" not in result.stderr and not pwned.exists()


def test_retry_failed_summary_is_data(tmp_path):
    from lora_harness.remote import fleet
    from lora_harness.remote.host_run import HostResult

    bad = Host("../../x", "127.0.0.1 -oProxyCommand=touch /tmp/PWNED")
    doc = fleet.document([HostResult(bad.name, bad.hostname, host=bad.describe())], {})
    (tmp_path / "fleet.json").write_text(json.dumps(doc))
    with pytest.raises(InputError, match="not a host name"):
        fleet.hosts_to_retry(tmp_path / "fleet.json")
    odd = Host("../../x", "127.0.0.1")
    doc = fleet.document([HostResult(odd.name, odd.hostname, host=odd.describe())], {})
    (tmp_path / "fleet.json").write_text(json.dumps(doc))
    (host,) = fleet.hosts_to_retry(tmp_path / "fleet.json")
    assert "/" not in names.folder_names([host.name])[host.name]
    (tmp_path / "fleet.json").write_text(json.dumps({"kind": "fleet", "hosts": [{"x": 1}]}))
    with pytest.raises(InputError, match="malformed"):
        fleet.hosts_to_retry(tmp_path / "fleet.json")


def test_fetch_refuses_a_run_id_that_is_a_path(cli, tmp_path):
    result = cli("remote", "fetch", "--host", "root@127.0.0.1", "--out", "home", "../../x")
    assert result.returncode == 2 and "is not a run id" in result.stderr


def test_remote_env_keys_are_checked_and_values_never_echoed(cli):
    for bad in ("--remote-env=-x=hunter22", "--remote-env=A B=hunter22"):
        result = cli("remote", "run", "--host", "root@127.0.0.1", bad)
        assert result.returncode == 2 and "environment name" in result.stderr
        assert "hunter22" not in result.stderr and "Traceback" not in result.stderr
    result = cli("remote", "run", "--host", "root@127.0.0.1", "--remote-env", "novalue")
    assert result.returncode == 2 and "KEY=VALUE" in result.stderr
    result = cli("remote", "run", "--host", "root@127.0.0.1", "--remote-env-from", "NOT_SET_X")
    assert result.returncode == 2 and "not set" in result.stderr


def test_tilde_only_at_the_start_of_a_work_dir_means_home():
    assert expand_home("~/.lora-harness", "/home/ml") == "/home/ml/.lora-harness"
    assert expand_home("~", "/home/ml") == "/home/ml"
    assert expand_home("/data/x~y/~z", "/home/ml") == "/data/x~y/~z"


def test_redactor_masks_values_in_argv_text_and_reports(tmp_path):
    from lora_harness.remote.redact import Redactor

    redactor = Redactor({"HF_TOKEN": "hf_sekrit123", "DEBUG": "1"})
    argv = ["x", "--remote-env", "HF_TOKEN=hf_sekrit123", "--remote-env=DEBUG=1", "-m", "a1"]
    assert redactor.argv(argv) == [
        "x",
        "--remote-env",
        "HF_TOKEN=***",
        "--remote-env=DEBUG=***",
        "-m",
        "a1",
    ]
    assert redactor.text("token hf_sekrit123 leaked") == "token *** leaked"


# --- secrets end to end ---------------------------------------------------------------


@pytest.mark.wheel
@needs_sshd
def test_secrets_are_masked_in_summary_logs_html_and_junit(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    pwned = tmp_path / "PWNED"
    # Shell metacharacters too: the host must get the value verbatim (the mask in its
    # echoed error line proves it) and never run any part of it.
    secret = f'hf_top$(touch {pwned})";secret42'
    os.environ["LH_TEST_TOKEN"] = "from-env-" + secret
    try:
        # The secret also reaches the remote's argv, so it shows up in its log and error.
        failing = ["--", "--model", f"fixture:{secret}", "--suite", "structure"]
        result = cli(
            "remote", "run", *connection_args(fleet, known), "--remote-env", f"HF_TOKEN={secret}",
            "--remote-env-from", "LH_TEST_TOKEN", "--json", "fleet.json", *failing, timeout=600,
        )  # fmt: skip
    finally:
        del os.environ["LH_TEST_TOKEN"]
    assert result.returncode == 4, result.stderr
    written = [p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()]
    for text in [result.stdout, result.stderr, *written]:
        assert secret not in text
    summary = json.loads((tmp_path / "fleet.json").read_text())
    assert "HF_TOKEN=***" in summary["run"]["command"]
    assert "***" in result.stderr  # the remote's own error line, masked
    assert not pwned.exists()


# --- known_hosts markers and trust ------------------------------------------------------


def _target(server, keys, **extra) -> Host:
    return Host(
        "h", "127.0.0.1", user="root", port=server.port,
        identity_files=[str(keys / "user_key")], **extra,
    )  # fmt: skip


@needs_sshd
def test_revoked_keys_are_refused_and_cert_authority_lines_skipped(hosts, keys, tmp_path, capsys):
    good, revoked = hosts(2)
    kind, blob = revoked.host_public_key.split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(
        f"@cert-authority *.example.com {kind} {blob}\n"
        f"{good.known_hosts_line()}\n{revoked.known_hosts_line()}\n"
        f"@revoked * {kind} {blob}\nnot a valid line\n"
    )
    client, _ = connect(_target(good, keys), [str(known)], False, 10)
    client.close()
    assert "@cert-authority line skipped" in capsys.readouterr().err
    for trust in (False, True):
        with pytest.raises(HostFailure, match="revoked") as failure:
            connect(_target(revoked, keys), [str(known)], trust, 10)
        assert failure.value.status == "hostkey_rejected"


@needs_sshd
def test_trusted_new_keys_are_remembered_and_trust_is_per_host(hosts, keys, tmp_path):
    trusted, other = hosts(2)
    known = tmp_path / "known_hosts"
    known.write_text("")
    client, added = connect(
        _target(trusted, keys, trust_new=True), [str(known)], False, 10, remember=str(known)
    )
    client.close()
    assert added and f"[127.0.0.1]:{trusted.port}" in known.read_text()
    client, added = connect(_target(trusted, keys), [str(known)], False, 10)  # remembered
    client.close()
    assert added == []
    with pytest.raises(HostFailure, match="unknown host key"):
        connect(_target(other, keys), [str(known)], False, 10)


# --- minor: interpreter, no-SSH port, wheel folders ------------------------------------


@pytest.mark.wheel
@needs_sshd
def test_missing_interpreter_says_so_and_no_wheel_folder_is_left(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    fleet.write_text(fleet.read_text().replace(sshd.base_python(), "/no/such/python3"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    result = cli_env(
        cli,
        {"TMPDIR": str(temp)},
        "remote",
        "run",
        *connection_args(fleet, known),
        "--json",
        "-",
        *STRUCTURE,
    )
    assert result.returncode == 4
    (host,) = result.json()["hosts"]
    assert (
        host["status"] == "error" and "interpreter '/no/such/python3' not found" in host["message"]
    )
    assert list(temp.iterdir()) == []


def cli_env(cli, env, *args):
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return cli(*args, timeout=300)
    finally:
        for k, v in before.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.wheel  # remote run builds the wheel before it connects
def test_a_port_that_speaks_no_ssh_is_unreachable_without_a_traceback(cli, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)

    def answer():
        for _ in range(3):
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    port = listener.getsockname()[1]
    result = cli(
        "remote", "run", "--host", f"root@127.0.0.1:{port}", "--trust-new-hosts",
        "--known-hosts", str(tmp_path / "none"), "--connect-timeout", "5", "--json", "-", *STRUCTURE,
    )  # fmt: skip
    listener.close()
    assert result.returncode == 4 and "Traceback" not in result.stderr, result.stderr
    (host,) = result.json()["hosts"]
    assert host["status"] == "unreachable" and "does not speak SSH" in host["message"]


# --- deadlines and Ctrl-C in every phase ----------------------------------------------


def _waiters(lock_dir: Path) -> list[int]:
    """Processes on this machine (the 'host') still holding or waiting for a deploy lock."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(lock_dir).encode() in cmdline and b".lock" in cmdline:
                found.append(int(entry))
    return found


def _gone(lock_dir: Path, within: float = 15.0) -> bool:
    end = time.monotonic() + within
    while _waiters(lock_dir) and time.monotonic() < end:
        time.sleep(0.2)
    return not _waiters(lock_dir)


@pytest.fixture
def held_deploy_lock(cli, hosts, keys, work_dir, tmp_path):
    """The shared venv, its harness marker dropped and its lock held by someone else."""
    import fcntl

    ensure_host_venv(cli, hosts, keys, work_dir, tmp_path)
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    for marker in work_dir.glob("venvs/*/.harness-*"):
        marker.unlink()
    held = [open(f"{venv}.lock", "w") for venv in work_dir.glob("venvs/*") if venv.is_dir()]
    for stream in held:
        fcntl.flock(stream, fcntl.LOCK_EX)
    yield fleet, known
    for stream in held:
        stream.close()


@pytest.mark.wheel
@needs_sshd
def test_deploy_deadline_holds_while_the_lock_is_taken(cli, held_deploy_lock, work_dir):
    fleet, known = held_deploy_lock
    result = remote(cli, fleet, known, "--deploy-timeout", "8")
    assert result.returncode == 4
    (host,) = result.json()["hosts"]
    assert host["status"] == "timeout" and "deploy" in host["message"], host["message"]
    assert _gone(work_dir / "venvs"), "a remote lock waiter was left behind"


@pytest.mark.wheel
@needs_sshd
def test_ctrl_c_stops_a_deploy_waiting_for_its_lock(held_deploy_lock, work_dir, tmp_path):
    fleet, known = held_deploy_lock
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_harness", "remote", "run",
         *connection_args(fleet, known), "--json", "-", *STRUCTURE],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    end = time.monotonic() + 240
    while not _waiters(work_dir / "venvs") and time.monotonic() < end:
        time.sleep(0.2)
    assert _waiters(work_dir / "venvs"), "the deploy never reached its lock"
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)  # a second Ctrl-C is no traceback either
    out, err = process.communicate(timeout=120)
    # 4 as for any host not run; killed by the second SIGINT only if that one landed while
    # the interpreter was already exiting (summary written, handlers reset).
    assert process.returncode in (4, -signal.SIGINT), err
    (host,) = json.loads(out)["hosts"]
    assert host["status"] == "interrupted" and "Ctrl-C" in host["message"]
    assert "Traceback" not in err
    assert _gone(work_dir / "venvs"), "a remote lock waiter was left behind"


@pytest.mark.wheel
@needs_sshd
def test_ctrl_c_during_a_run_reads_interrupted_not_timeout(hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    slow = [
        "--",
        "--model",
        "fixture:tiny",
        "--iters",
        "100000",
        "--check",
        "loss_finite_and_decreasing",
    ]
    earlier = set(work_dir.glob("runs/*/studio-0/pid"))
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_harness", "remote", "run",
         *connection_args(fleet, known), "--json", "-", *slow],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    end = time.monotonic() + 300
    while not set(work_dir.glob("runs/*/studio-0/pid")) - earlier and time.monotonic() < end:
        time.sleep(0.2)
    assert set(work_dir.glob("runs/*/studio-0/pid")) - earlier, "the run never started"
    time.sleep(1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    (host,) = json.loads(out)["hosts"]
    assert host["status"] == "interrupted" and "Ctrl-C" in host["message"], host
    assert process.returncode == 4


# --- per-host isolation ------------------------------------------------------------------


def test_one_hosts_bad_report_is_that_hosts_error_only(cli, tmp_path):
    from lora_harness.remote.controller import render_fleet
    from lora_harness.remote.host_run import HostResult, _judge
    from lora_harness.remote.redact import Redactor
    from lora_harness.remote.shell import Completed

    made = cli("run", "--model", "shape:qwen2.5-0.5b", "--suite", "structure", "--out", "local")
    assert made.returncode == 0, made.stderr
    (good,) = (tmp_path / "local").glob("*/report.json")
    missing = tmp_path / "missing.json"
    document = json.loads(good.read_text())
    del document["summary"]
    missing.write_text(json.dumps(document))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json {")
    unrenderable = tmp_path / "unrenderable.json"
    document = json.loads(good.read_text())
    document["checks"] = "not a list"
    unrenderable.write_text(json.dumps(document))
    results = []
    for name, report in (
        ("good", good),
        ("missing", missing),
        ("<script>x</script>", garbage),
        ("odd", unrenderable),
    ):
        result = HostResult(name, "127.0.0.1")
        _judge(result, Completed(0, "", "", 0), report, False, Redactor())
        results.append(result)
    render_fleet(results, tmp_path / "fleet")
    status = {r.name: r.status for r in results}
    assert status == {
        "good": "passed", "missing": "error", "<script>x</script>": "error", "odd": "error"
    }  # fmt: skip
    assert "<script>x" not in (tmp_path / "fleet" / "fleet.html").read_text()
    assert "cannot be" in results[1].message and "cannot be" in results[2].message
    assert (tmp_path / "fleet" / "fleet.html").exists() and (
        tmp_path / "fleet" / "junit.xml"
    ).exists()


# --- local folders from odd host names, end to end --------------------------------------


@pytest.mark.wheel
@needs_sshd
def test_odd_host_names_collect_into_distinct_folders_inside_out(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(
        tmp_path, hosts(2), keys, work_dir, names=["../../escape", ".._.._escape"]
    )
    result = remote(cli, fleet, known, "--parallel", "2")
    assert result.returncode == 0, result.stderr
    reports = [Path(h["report"]).resolve() for h in result.json()["hosts"]]
    out = (tmp_path / "out").resolve()
    assert all(out in report.parents for report in reports)
    assert len({report.parents[1] for report in reports}) == 2
    assert not (tmp_path.parent / "escape").exists()


# --- detached training tells the truth ---------------------------------------------------


@pytest.mark.wheel
@needs_sshd
def test_detached_training_that_dies_at_once_is_reported_with_its_log(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    common = connection_args(fleet, known, out="home")
    earlier = set(work_dir.glob("runs/*"))
    # A generous grace: it returns as soon as the process died, however slow the machine.
    # A path is checked only on the host (values are checked before any host is contacted).
    started = cli(
        "remote", "train", *common, "--start-grace", "300", "--", "--data", "no-such-folder",
        timeout=600,
    )  # fmt: skip
    assert started.returncode == 2, started.stderr
    assert "training exited 2" in started.stderr and "--data" in started.stderr
    assert "training started" not in started.stderr
    (run_dir,) = set(work_dir.glob("runs/*")) - earlier
    followed = cli("remote", "monitor", *common, run_dir.name)
    assert followed.returncode == 2 and "last log lines" in followed.stderr
    fetched = cli("remote", "fetch", *common, run_dir.name)
    assert fetched.returncode == 2 and "exited 2" in fetched.stdout + fetched.stderr
