"""`remote run --with-local-package PATH`: the user's backend travels beside the harness wheel.

Against a real sshd on loopback, as tests/test_remote.py; the host runs from its own run
folder with no PYTHONPATH, so `--recipe mlx_backend...` imports only what was installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import sshd
from tests.support.helpers import ROOT
from tests.support.remote import connection_args, write_fleet

pytestmark = [
    pytest.mark.remote,
    pytest.mark.wheel,
    pytest.mark.skipif(
        not sshd.available(), reason="needs OpenSSH sshd and root (.ci/run installs it)"
    ),
    pytest.mark.usefixtures("work_dir"),  # sets the wheelhouse connection_args passes on
]

BACKEND = ROOT / "examples" / "user_backend"
GATE_ON = ["--", "--model", "shape:qwen2.5-0.5b", "--suite", "structure", "--recipe"]


@pytest.fixture
def host(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "authorized_keys").write_text(sshd.keygen(keys / "user_key") + "\n")
    started = sshd.SshdHost.start(tmp_path / "sshd", keys / "authorized_keys")
    yield started, keys
    started.stop()


def _remote(cli, tmp_path, host, *extra):
    started, keys = host
    fleet, known = write_fleet(tmp_path, [started], keys, tmp_path / "work")
    done = cli("remote", "run", *connection_args(fleet, known), "--json", "-", *extra)
    (entry,) = done.json()["hosts"]
    return done, entry


def test_local_package_is_installed_on_the_host_for_recipe(cli, host, tmp_path):
    without, entry = _remote(cli, tmp_path, host, *GATE_ON, "mlx_backend.lora_gate:RECIPE")
    assert entry["status"] != "passed"  # the host cannot import the user's backend
    shipped = ["--with-local-package", str(BACKEND)]
    done, entry = _remote(cli, tmp_path, host, *shipped, *GATE_ON, "mlx_backend.lora_gate:RECIPE")
    assert done.returncode == 0, (done.stderr, entry)
    report = json.loads(Path(entry["report"]).read_text())
    assert report["run"]["recipe"]["name"] == "mlx_backend.lora_gate:RECIPE"
    spec = "mlx_backend.lora_gate:UNFREEZE_WITHOUT_KEYS"
    done, entry = _remote(cli, tmp_path, host, *shipped, *GATE_ON, spec)
    assert done.returncode == 1 and entry["status"] == "failed", entry
    statuses = {
        c["name"]: c["status"] for c in json.loads(Path(entry["report"]).read_text())["checks"]
    }
    assert statuses["trainable_keys_exact"] == "fail"


def test_local_package_without_a_project_is_an_input_error(cli, tmp_path):
    done = cli("remote", "run", "--host", "root@127.0.0.1:1", "--with-local-package", str(tmp_path))
    assert done.returncode == 2
    assert "no pyproject.toml or setup.py" in done.stderr
