"""Shared fixtures: one fixture-model cache per session, the CLI, remote hosts; test tiers.

Plain helpers (paths, run_gate, CliResult, sshd, Chromium) live in tests/support/.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import settings as hypothesis_settings

from tests.support import remote as remote_support
from tests.support import sshd
from tests.support.helpers import ROOT, CliResult

# Property tests draw the same examples on every run: CI fails only for code that changed.
# A bug found by exploring is kept as an explicit @example. To explore for new ones:
# HYPOTHESIS_PROFILE=explore pytest ...
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(scope="session", autouse=True)
def fixture_cache(tmp_path_factory):
    """Build fixture models into a per-session cache so tests never touch the user's.

    pytest-xdist workers share it (their base folders sit side by side in the session's):
    one builds each fixture under its lock while the others wait, instead of each building
    its own copy at the same time on the same cores.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    cache = root / "fixture-cache"
    cache.mkdir(exist_ok=True)
    previous = os.environ.get("LORA_HARNESS_CACHE")
    os.environ["LORA_HARNESS_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("LORA_HARNESS_CACHE", None)
    else:
        os.environ["LORA_HARNESS_CACHE"] = previous


@pytest.fixture(scope="session")
def fixture_source(fixture_cache):
    from lora_harness.models.sources import resolve

    return resolve("fixture:tiny")


@pytest.fixture(scope="session")
def smollm2(fixture_cache):
    """The real model's verified GGUF file (real:smollm2-135m), fetched once for the workers."""
    from lora_harness.models import real

    return real.gguf_path("smollm2-135m")


@pytest.fixture
def cli(tmp_path):
    """Run `lora-harness ARGS` in a subprocess, as a user would, inside tmp_path."""

    def invoke(*args: str, timeout: float = 300) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "lora_harness", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        return CliResult(done.returncode, done.stdout, done.stderr)

    return invoke


# -- remote hosts: real sshd processes on loopback (tests/test_remote*.py) ---------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    public = sshd.keygen(folder / "user_key")
    (folder / "authorized_keys").write_text(public + "\n")
    sshd.keygen(folder / "stranger_key")
    return folder


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
    """Shared by the tests, as a real host's ~/.lora-harness: venvs are reused by hash."""
    work, remote_support.REMOTE["wheelhouse"] = sshd.shared_remote_dirs(tmp_path_factory)
    return work


@pytest.fixture
def hosts(keys, tmp_path):
    started = []

    def start(count: int):
        for _ in range(count):
            started.append(
                sshd.SshdHost.start(tmp_path / f"sshd-{len(started)}", keys / "authorized_keys")
            )
        return started[-count:]

    yield start
    for host in started:
        host.stop()


# -- spreading the suite over pytest-xdist workers (pyproject: -n auto --dist loadfile) ------
# Longest first, so no worker is left alone with a long file at the end; and the remote
# test files share one worker, whose session builds the hosts' venv once for all of them.
LONGEST_FIRST = ("tests/test_remote", "tests/test_checks.py", "tests/test_bench.py")


def _scope_rank(nodeid: str) -> int:
    ranks = [i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)]
    return ranks[0] if ranks else len(LONGEST_FIRST)


# Every tier that needs more than this process (sshd, Chromium, a wheel, ranks, weights) is
# also `slow`, so `-m "not slow"` is the whole fast loop (markers: pyproject.toml). So is a
# test that starts the CLI or pytest in a subprocess (`cli`, `pytester`): each start imports
# mlx and mlx-lm again, seconds of CPU before the test does anything.
SLOW_TIERS = ("remote", "browser", "wheel", "distributed", "real_model")
SUBPROCESS_FIXTURES = ("cli", "pytester")


def pytest_collection_modifyitems(items):
    for item in items:
        tier = any(item.get_closest_marker(name) for name in SLOW_TIERS)
        if tier or set(SUBPROCESS_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: _scope_rank(item.nodeid))  # stable: files keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None  # the user asked for another distribution
    from xdist.scheduler import LoadFileScheduling

    class RemoteTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/test_remote*" if scope.startswith("tests/test_remote") else scope

    return RemoteTogether(config, log)
