"""Shared test set-up: one fixture-model cache per session, and helpers to run the CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run: CI fails only for code that changed.
# A bug found by exploring is kept as an explicit @example. To explore for new ones:
# HYPOTHESIS_PROFILE=explore pytest ...
hypothesis_settings.register_profile("deterministic", derandomize=True, database=None)
hypothesis_settings.register_profile("explore", derandomize=False)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


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


def run_gate(source, recipe=None, **lora_changes):
    """Run the gate suite on `source` with `recipe`; returns {check name: CheckResult}."""
    from lora_harness.lora.lora_config import LoRAConfig, learning_rate_for
    from lora_harness.lora.recipe import CORRECT
    from lora_harness.runs import suites
    from lora_harness.runs.context import RunContext

    if "learning_rate" not in lora_changes:  # the default a user of the CLI gets
        rank = lora_changes.get("rank", LoRAConfig.rank)
        lora_changes["learning_rate"] = learning_rate_for(source.config, rank)
    lora = dataclasses.replace(LoRAConfig(), **lora_changes)
    ctx = RunContext(source, lora, recipe=recipe or CORRECT)
    return {r.name: r for r in suites.run_checks(ctx, suites.GATE)}


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


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


# -- spreading the suite over pytest-xdist workers (pyproject: -n auto --dist loadfile) ------
# Longest first, so no worker is left alone with a long file at the end; and the remote
# test files share one worker, whose session builds the hosts' venv once for all of them.
LONGEST_FIRST = ("tests/test_remote", "tests/test_checks.py", "tests/test_bench.py")


def _scope_rank(nodeid: str) -> int:
    ranks = [i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)]
    return ranks[0] if ranks else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
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
