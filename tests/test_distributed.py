"""Data-parallel LoRA with MLX's own launcher: `mlx.launch -n 2 --backend ring` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

LAUNCH = shutil.which("mlx.launch")
pytestmark = pytest.mark.skipif(LAUNCH is None, reason="mlx.launch not on PATH")


def launch(tmp_path, *args, timeout=300):
    command = [
        LAUNCH,
        "-n",
        "2",
        "--backend",
        "ring",
        sys.executable,
        "-m",
        "harness",
        "run",
        "--distributed",
        "-q",
        "--out",
        str(tmp_path / "out"),
        *args,
    ]
    tic = time.monotonic()
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    return done, time.monotonic() - tic


def report(tmp_path) -> dict:
    (path,) = (tmp_path / "out").glob("*/report.json")  # rank 0 alone writes
    return json.loads(path.read_text())


def test_two_ranks_train_in_sync_and_match_one_process(tmp_path):
    done, _ = launch(tmp_path)
    assert done.returncode == 0, done.stderr
    document = report(tmp_path)
    assert document["summary"]["verdict"] == "pass", [c["message"] for c in document["checks"]]
    assert document["run"]["suite"] == "distributed"
    assert [r["rank"] for r in document["distributed"]["ranks"]] == [0, 1]


def test_a_rank_skipping_the_average_is_caught(tmp_path):
    launch(tmp_path, "--inject-fault", "rank_skips_average")
    statuses = {c["name"]: c["status"] for c in report(tmp_path)["checks"]}
    assert statuses["ranks_in_sync"] == "fail"
    assert statuses["distributed_matches_single"] == "fail"


def test_a_dead_rank_ends_the_run_within_its_deadline(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_dies", "--distributed-timeout", "20", timeout=120
    )
    assert seconds < 60
    output = done.stdout + done.stderr
    assert "rank 1" in output.lower() or "no progress" in output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/report.json"))


def test_a_hung_rank_is_ended_by_the_watchdog(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_hangs", "--distributed-timeout", "10", timeout=120
    )
    assert seconds < 60
    assert "no progress for 10 s; another rank probably died or hung" in done.stdout + done.stderr
