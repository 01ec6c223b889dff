"""The remote runner tells the truth against a real sshd (#26): a login shell that prints a
banner (with escape sequences) around every command, and a host harness that exits non-zero
after writing its report."""

from __future__ import annotations

import json

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
