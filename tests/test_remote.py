"""The remote runner against real OpenSSH sshd processes on loopback (no mocks).

Each sshd plays one host. The host's venv is a plain venv of the base interpreter (no
system site packages, sshd's clean environment), so it cannot see this checkout: the harness
reaches it only as the wheel the runner ships, its dependencies from a wheelhouse that the
session downloads once and every test reuses with the shared work dir (as a real host
reuses its ~/.lora-harness).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lora_harness.reports import json_report
from tests.support import sshd
from tests.support.remote import (
    REMOTE,
    STRUCTURE,
    connection_args,
    ensure_host_venv,
    remote,
    statuses,
    write_fleet,
)

pytestmark = [
    pytest.mark.remote,
    pytest.mark.wheel,
    pytest.mark.skipif(
        not sshd.available(), reason="needs OpenSSH sshd and root (.ci/run installs it)"
    ),
]


def test_one_host_end_to_end_report_collected_and_valid(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    result = remote(cli, fleet, known)
    assert result.returncode == 0, result.stderr
    summary = result.json()
    (host,) = summary["hosts"]
    assert host["status"] == "passed"
    assert set(host["phase_durations"]) == {"connect", "deploy", "run", "collect"}
    report = json.loads(Path(host["report"]).read_text())
    jsonschema.validate(report, json_report.schema())
    assert Path(host["report"]).parts[-3] == "studio-0"
    assert {c["name"]: c["observed"] for c in report["checks"]}["lora_layer_count"] == 168
    run_folder = tmp_path / "out" / summary["run"]["id"]
    assert (run_folder / "fleet.html").exists() and (run_folder / "junit.xml").exists()


def test_host_venv_cannot_see_this_checkout(cli, hosts, keys, work_dir, tmp_path):
    from lora_harness.remote import shell
    from lora_harness.remote.connection import connect
    from lora_harness.remote.inventory import Host

    ensure_host_venv(cli, hosts, keys, work_dir, tmp_path)
    (host,) = hosts(1)
    fleet, known = write_fleet(tmp_path, [host], keys, work_dir)
    target = Host(
        "h", "127.0.0.1", user="root", port=host.port, identity_files=[str(keys / "user_key")]
    )
    client, _ = connect(target, [str(known)], False, 10)
    code = "import lora_harness,sys; print(lora_harness.__file__); print(sys.prefix)"
    seen = []
    for venv in sorted(work_dir.glob("venvs/*/bin/python")):
        done = shell.run(client, shell.quote([str(venv), "-c", code]), timeout=60)
        seen.append((venv, done.stdout_tail.split()))
    client.close()
    checkout = str(Path(__file__).resolve().parents[1])
    venvs = [(venv, out) for venv, out in seen if out and out[1] == str(venv.parents[1])]
    assert venvs, seen
    for venv, (module, _) in venvs:
        assert module.startswith(str(venv.parents[1])), module
        assert not module.startswith(checkout) and "/work/" not in module.replace(str(work_dir), "")


def test_second_deploy_uploads_nothing(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    first = remote(cli, fleet, known)
    second = remote(cli, fleet, known)
    assert first.returncode == second.returncode == 0, second.stderr
    assert second.json()["hosts"][0]["deploy"].get("bytes_uploaded", 0) == 0
    assert "installed" not in second.json()["hosts"][0]["deploy"]


def test_four_hosts_at_once(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(4), keys, work_dir)
    result = remote(cli, fleet, known, "--parallel", "4")
    assert result.returncode == 0, result.stderr
    assert set(statuses(result).values()) == {"passed"}
    assert len(statuses(result)) == 4


def test_two_entries_for_one_machine_build_its_venv_once(cli, hosts, keys, work_dir, tmp_path):
    # Same machine, same work dir, harness not yet installed: without the remote lock both
    # install at once. (Dropping the install markers keeps the venv and its dependencies.)
    ensure_host_venv(cli, hosts, keys, work_dir, tmp_path)
    for marker in work_dir.glob("venvs/*/.harness-*"):
        marker.unlink()
    fleet, known = write_fleet(tmp_path, hosts(2), keys, work_dir)
    result = remote(cli, fleet, known, "--parallel", "2")
    assert result.returncode == 0, [h["message"] for h in result.json()["hosts"]]
    installs = [h["deploy"].get("installed", False) for h in result.json()["hosts"]]
    assert sorted(installs) == [False, True]


def test_ssh_config_aliases_and_proxy_command_are_honoured(cli, hosts, keys, work_dir, tmp_path):
    direct, behind = hosts(2)
    known = tmp_path / "known_hosts"
    known.write_text(f"{direct.known_hosts_line()}\n{behind.known_hosts_line()}\n")
    jump = (
        f"ssh -q -o BatchMode=yes -o UserKnownHostsFile={known} -i {keys / 'user_key'} "
        f"-p {direct.port} root@127.0.0.1 -W %h:%p"
    )
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host studio-alias\n  HostName 127.0.0.1\n  Port {direct.port}\n  User root\n"
        f"  IdentityFile {keys / 'user_key'}\n"
        f"Host behind-jump\n  HostName 127.0.0.1\n  Port {behind.port}\n  User root\n"
        f"  IdentityFile {keys / 'user_key'}\n  ProxyCommand {jump}\n"
    )
    result = cli(
        "remote", "run", "--host", "studio-alias", "--host", "behind-jump",
        "--ssh-config", str(config), "--known-hosts", str(known),
        "--remote-python", sshd.base_python(), "--work-dir", str(work_dir),
        "--wheelhouse", str(REMOTE["wheelhouse"]), "--remote-env",
        f"LORA_HARNESS_CACHE={os.environ['LORA_HARNESS_CACHE']}",
        "--out", "out", "--json", "-", *STRUCTURE,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, [h["message"] for h in result.json()["hosts"]]
    assert statuses(result) == {"studio-alias": "passed", "behind-jump": "passed"}
    ports = {h["name"]: h["host"]["port"] for h in result.json()["hosts"]}
    assert ports == {"studio-alias": direct.port, "behind-jump": behind.port}


def test_unknown_host_key_is_refused_unless_trusted_explicitly(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    known.write_text("")
    refused = remote(cli, fleet, known)
    assert refused.returncode == 4
    (host,) = refused.json()["hosts"]
    assert host["status"] == "hostkey_rejected" and "ssh-keyscan" in host["message"]
    trusted = remote(cli, fleet, known, "--trust-new-hosts")
    assert trusted.returncode == 0, trusted.stderr
    assert "SHA256:" in trusted.json()["hosts"][0]["trusted_host_keys"][0]


def test_changed_host_key_always_fails(cli, hosts, keys, work_dir, tmp_path):
    (host,) = hosts(1)
    fleet, known = write_fleet(tmp_path, [host], keys, work_dir)
    other = sshd.keygen(tmp_path / "impostor").split()
    known.write_text(f"[127.0.0.1]:{host.port} {other[0]} {other[1]}\n")
    result = remote(cli, fleet, known, "--trust-new-hosts")
    assert result.returncode == 4
    assert statuses(result) == {"studio-0": "hostkey_rejected"}
    assert "CHANGED" in result.json()["hosts"][0]["message"]


def test_wrong_user_key_is_auth_failed(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir, key="stranger_key")
    result = remote(cli, fleet, known)
    assert result.returncode == 4 and statuses(result) == {"studio-0": "auth_failed"}


def test_closed_port_is_unreachable(cli, hosts, keys, work_dir, tmp_path):
    (host,) = hosts(1)
    fleet, known = write_fleet(tmp_path, [host], keys, work_dir)
    host.stop()
    result = remote(cli, fleet, known, "--connect-timeout", "5")
    assert result.returncode == 4 and statuses(result) == {"studio-0": "unreachable"}


def test_run_past_its_deadline_is_killed_and_reported_timeout(cli, hosts, keys, work_dir, tmp_path):
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
    result = remote(cli, fleet, known, "--run-timeout", "8", run_args=slow)
    assert result.returncode == 4, result.stderr
    assert statuses(result) == {"studio-0": "timeout"}
    run_id = result.json()["run"]["id"]
    pid = int((work_dir / "runs" / run_id / "studio-0" / "pid").read_text())
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the remote process group is gone


def test_sshd_killed_mid_run_fails_that_host_only(cli, hosts, keys, work_dir, tmp_path):
    import threading

    victim, survivor = hosts(2)
    fleet, known = write_fleet(tmp_path, [victim, survivor], keys, work_dir)
    earlier = set(work_dir.glob("runs/*/studio-0/pid"))

    def kill_once_running():  # the kill lands in the run phase, however slow the machine
        end = time.monotonic() + 600
        while not set(work_dir.glob("runs/*/studio-0/pid")) - earlier:
            if time.monotonic() > end:
                return
            time.sleep(0.1)
        victim.kill_all()

    steady = ["--", "--model", "fixture:tiny", "--iters", "10", "--check", "frozen_base_unchanged"]
    killer = threading.Thread(target=kill_once_running, daemon=True)
    killer.start()
    result = remote(cli, fleet, known, run_args=steady)
    killer.join()
    assert result.returncode == 4, result.stderr
    assert statuses(result) == {"studio-0": "error", "studio-1": "passed"}


DISTRIBUTED = ["--", "--model", "fixture:tiny"]


def ring_args() -> list[str]:
    return ["--distributed", "--starting-port", str(sshd.free_port())]


def test_distributed_across_two_hosts_rank_0_reports_for_both(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(2), keys, work_dir)
    result = remote(cli, fleet, known, *ring_args(), run_args=DISTRIBUTED)
    assert result.returncode == 0, result.stderr
    first, second = result.json()["hosts"]
    assert (first["status"], second["status"]) == ("passed", "passed")
    assert second["report"] is None and "report written by rank 0 (studio-0)" in second["message"]
    report = json.loads(Path(first["report"]).read_text())
    assert report["run"]["suite"] == "distributed"
    assert [r["rank"] for r in report["distributed"]["ranks"]] == [0, 1]
    assert (Path(first["report"]).parents[2] / "fleet.html").exists()


def test_distributed_rank_that_dies_fails_the_run_with_its_reason(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(2), keys, work_dir)
    dying = [*DISTRIBUTED, "--inject-fault", "rank_dies", "--distributed-timeout", "30"]
    result = remote(cli, fleet, known, *ring_args(), run_args=dying, timeout=300)
    assert result.returncode == 4, result.stderr
    first, second = result.json()["hosts"]
    assert (first["exit_status"], second["exit_status"]) == (5, 9)
    assert first["status"] == second["status"] == "error"
    assert "another rank probably died or hung" in first["message"]
    assert first["report"] is None


def test_distributed_needs_two_hosts(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    result = remote(cli, fleet, known, *ring_args(), run_args=DISTRIBUTED)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("lora-harness: error: --distributed needs")
    )


def test_large_remote_output_does_not_hang(hosts, keys, tmp_path):
    from lora_harness.remote import shell
    from lora_harness.remote.connection import connect
    from lora_harness.remote.inventory import Host

    (host,) = hosts(1)
    known = tmp_path / "known"
    known.write_text(host.known_hosts_line() + "\n")
    target = Host(
        "big", "127.0.0.1", user="root", port=host.port, identity_files=[str(keys / "user_key")]
    )
    client, _ = connect(target, [str(known)], False, 10)
    code = "import sys; sys.stdout.write('x' * 9_000_000); sys.stderr.write('y' * 9_000_000)"
    done = shell.run(client, shell.quote([sys.executable, "-c", code]), timeout=120)
    client.close()
    assert done.exit_status == 0 and done.bytes_read == 18_000_000
    assert len(done.stdout_tail) <= 64 * 1024 + 65536


@pytest.fixture(scope="module")
def one_connection(keys, tmp_path_factory):
    from lora_harness.remote.connection import connect
    from lora_harness.remote.inventory import Host

    folder = tmp_path_factory.mktemp("inject")
    host = sshd.SshdHost.start(folder / "sshd", keys / "authorized_keys")
    (folder / "known").write_text(host.known_hosts_line() + "\n")
    target = Host(
        "x", "127.0.0.1", user="root", port=host.port, identity_files=[str(keys / "user_key")]
    )
    client, _ = connect(target, [str(folder / "known")], False, 10)
    yield client, folder
    client.close()
    host.stop()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(
        alphabet=st.sampled_from(list("ab ;'\"$`\\|&*(){}<>!#-_.")), min_size=1, max_size=20
    )
)
def test_names_with_shell_metacharacters_are_not_injected(one_connection, name):
    from lora_harness.remote import shell

    client, folder = one_connection
    target = folder / "paths" / name.replace("/", "_")
    done = shell.run(
        client,
        shell.quote(["mkdir", "-p", str(target)]) + " && " + shell.quote(["printf", "%s", name]),
        timeout=30,
    )
    assert done.exit_status == 0
    assert done.stdout_tail == name
    assert target.is_dir()
    assert not Path("/tmp/pwned").exists()


def test_detached_training_monitor_and_fetch(cli, hosts, keys, work_dir, tmp_path):
    (host,) = hosts(1)
    fleet, known = write_fleet(tmp_path, [host], keys, work_dir)
    secret = "detached-secret-4711"
    common = connection_args(fleet, known, out="home")
    started = cli(
        "remote", "train", *common, "--remote-env", f"LH_TOKEN={secret}",
        "--", "--iters", "40", "--save-every", "20",
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    # The token reaches the host's process through a 0600 file, never its argv (`ps`).
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            assert secret.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            pass
    followed = cli("remote", "monitor", *common, run_id)
    assert followed.returncode == 0, followed.stderr
    assert "[studio-0] step 40 loss" in followed.stderr
    fetched = cli("remote", "fetch", *common, run_id)
    assert fetched.returncode == 0, fetched.stderr
    adapters = tmp_path / "home" / "studio-0" / run_id / "adapters"
    assert (adapters / "adapters.safetensors").exists() and (
        adapters / "0000020_adapters.safetensors"
    ).exists()
    assert len((adapters / "metrics.jsonl").read_text().splitlines()) == 40


def test_scripts_keep_the_seed_arguments():
    root = Path(__file__).resolve().parents[1] / "scripts"
    for script in ("run_test_on_mac_studio.sh", "train_on_mac_studio.sh", "monitor_training.sh"):
        import subprocess

        done = subprocess.run(["bash", str(root / script)], capture_output=True, text=True)
        assert done.returncode == 2 and "<host> <user>" in done.stderr


def test_remote_bench_brings_each_hosts_figures_home(cli, hosts, keys, work_dir, tmp_path):
    fleet, known = write_fleet(tmp_path, hosts(2), keys, work_dir)
    bench_args = ["--", "--only", "fingerprint", "--only", "lora_step_vs_forward", "--pairs", "1"]
    result = cli(
        "remote", "bench", *connection_args(fleet, known), "--json", "-", *bench_args, timeout=900
    )
    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert statuses(result) == {"studio-0": "passed", "studio-1": "passed"}
    for host in summary["hosts"]:
        figures = host["bench"]["figures"]
        assert figures["fingerprint_bandwidth_ratio"] > 0 and figures["step_over_forward"] > 0
        assert figures["hardware_fingerprint"] and figures["tokens_per_second"] is None
        assert set(host["bench"]["measurements"]) == {"fingerprint", "lora_step_vs_forward"}
    page = (Path(summary["hosts"][0]["report"]).parents[2] / "fleet.html").read_text()
    assert page.count("<tr>") == 3 and "studio-1" in page and "step_over_forward" in page


def test_remote_plan_gives_each_host_its_verdict_and_the_change_that_fits(
    cli, hosts, keys, work_dir, tmp_path
):
    fleet, known = write_fleet(tmp_path, hosts(1), keys, work_dir)
    plan_args = ["--", "--model", "fixture:tiny", "--batch-size", "2", "--max-seq-length", "256"]
    result = cli(
        "remote", "plan", *connection_args(fleet, known), "--json", "-", *plan_args,
        "--memory-gb", "0.01", timeout=900,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr  # a host where the run does not fit fails
    (host,) = result.json()["hosts"]
    assert host["status"] == "failed" and host["plan"]["verdict"] == "does not fit"
    assert host["plan"]["predicted_peak_bytes"] > host["plan"]["budget_bytes"] == 10**7
    assert host["plan"]["cheapest_change"] in host["message"]
    page = (Path(host["report"]).parents[2] / "fleet.html").read_text()
    assert page.count("<tr>") == 2 and "does not fit" in page
