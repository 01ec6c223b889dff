"""Data-parallel LoRA with MLX's own launcher: `mlx.launch -n 2 --backend ring` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import jsonschema
import pytest

from lora_harness.reports import html, json_report
from tests.conftest import ROOT
from tests.sshd import free_port

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
        "lora_harness",
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
    ranks = document["distributed"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["adapter_digest"] == ranks[1]["adapter_digest"]
    jsonschema.validate(document, json_report.schema())
    page = html.render([document])
    assert page.count('class="rank"') == 2 and "differs from rank 0" not in page


def test_a_rank_skipping_the_average_is_caught(tmp_path):
    launch(tmp_path, "--inject-fault", "rank_skips_average")
    document = report(tmp_path)
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert statuses["ranks_in_sync"] == "fail"
    assert statuses["distributed_matches_single"] == "fail"
    first, second = document["distributed"]["ranks"]
    assert first["adapter_digest"] != second["adapter_digest"]
    assert "differs from rank 0" in html.render([document])


def test_a_dead_rank_ends_the_run_within_its_deadline(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_dies", "--distributed-timeout", "20", timeout=120
    )
    assert seconds < 60
    output = done.stdout + done.stderr
    # mlx.launch may end rank 0 itself as soon as rank 1 exits; either way one line names it.
    assert "rank 1 exited" in output or "another rank probably died" in output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/report.json"))


def test_a_hung_rank_is_ended_by_the_watchdog(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_hangs", "--distributed-timeout", "10", timeout=120
    )
    assert seconds < 60
    assert "no progress for 10 s; another rank probably died or hung" in done.stdout + done.stderr


def test_a_rank_whose_peer_dies_exits_5_without_a_report(tmp_path):
    # The ranks started by hand (the ring backend's own environment), so no launcher ends
    # rank 0 first: this is what a rank sees when the other host goes down.
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{free_port()}"], [f"127.0.0.1:{free_port()}"]]))
    command = [sys.executable, "-m", "lora_harness", "run", "--distributed", "-q"]
    command += ["--out", str(tmp_path / "out"), "--inject-fault", "rank_dies"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLX_HOSTFILE": str(hostfile)}
    ranks = [
        subprocess.Popen(
            command,
            env={**env, "MLX_RANK": str(rank)},
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    try:
        stderr = ranks[0].communicate(timeout=120)[1]
    finally:
        for process in ranks:
            process.kill()
    assert ranks[0].returncode == 5
    lines = [line for line in stderr.splitlines() if line.startswith("lora-harness: rank 0")]
    (line,) = lines  # one line: the cause (MLX's own words) and what it means
    assert line.startswith("lora-harness: rank 0: training stopped: [ring]")
    assert line.endswith(
        "another rank probably died or hung (see its log); ending this rank without a report"
    )
    assert not list(tmp_path.glob("out/*/report.json"))
