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

from lora_harness.core.errors import EXIT_RANK_ERROR, EXIT_RANK_LOST
from lora_harness.reports import html, json_report
from lora_harness.runs import distributed, suites
from tests.support.helpers import ROOT
from tests.support.sshd import free_port

LAUNCH = shutil.which("mlx.launch")
pytestmark = pytest.mark.skipif(LAUNCH is None, reason="mlx.launch not on PATH")


@pytest.fixture(scope="module", autouse=True)
def built_fixture(fixture_cache):
    """fixture:tiny built once here: ranks that each build it at once double the CPU work,
    which on a busy 2-core machine pushed a launch past its timeout."""
    from lora_harness.models.fixture import fixture_path

    return fixture_path("tiny")


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


@pytest.mark.distributed
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


@pytest.mark.distributed
def test_a_rank_skipping_the_average_is_caught(tmp_path):
    launch(tmp_path, "--inject-fault", "rank_skips_average")
    document = report(tmp_path)
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    declared = suites.catchers("rank_skips_average", suites.DISTRIBUTED)
    assert declared and {n: statuses[n] for n in declared} == dict.fromkeys(declared, "fail")
    first, second = document["distributed"]["ranks"]
    assert first["adapter_digest"] != second["adapter_digest"]
    assert "differs from rank 0" in html.render([document])


@pytest.mark.distributed
def test_a_dead_rank_ends_the_run_within_its_deadline(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_dies", "--distributed-timeout", "20", timeout=120
    )
    assert seconds < 60
    output = done.stdout + done.stderr
    # mlx.launch may end rank 0 itself as soon as rank 1 exits; either way one line names it.
    assert "rank 1 exited" in output or "another rank probably died" in output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*/report.json"))


@pytest.mark.distributed
def test_a_hung_rank_is_ended_by_the_watchdog(tmp_path):
    done, seconds = launch(
        tmp_path, "--inject-fault", "rank_hangs", "--distributed-timeout", "10", timeout=120
    )
    assert seconds < 60
    assert "no progress for 10 s; another rank probably died or hung" in done.stdout + done.stderr


def start_by_hand(tmp_path, *args) -> list[tuple[int, str]]:
    """Both ranks started by hand (the ring backend's own environment), no launcher: no one
    ends a rank because another exited, so each rank's own exit code and words are seen.
    Returns (exit code, stderr) per rank."""
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([[f"127.0.0.1:{free_port()}"], [f"127.0.0.1:{free_port()}"]]))
    command = [sys.executable, "-m", "lora_harness", "run", "--distributed", "-q"]
    command += ["--out", str(tmp_path / "out"), *args]
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
        errors = [process.communicate(timeout=300)[1] for process in ranks]
        return [(process.returncode, text) for process, text in zip(ranks, errors, strict=True)]
    finally:
        for process in ranks:
            process.kill()


def own_lines(stderr: str, rank: int) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"lora-harness: rank {rank}")]


@pytest.mark.distributed
def test_a_rank_whose_peer_dies_exits_5_without_a_report(tmp_path):
    # This is what a rank sees when the other host goes down.
    (code, stderr), _ = start_by_hand(tmp_path, "--inject-fault", "rank_dies")
    assert code == EXIT_RANK_LOST
    (line,) = own_lines(stderr, 0)  # one line: the cause (MLX's own words) and what it means
    assert line.startswith("lora-harness: rank 0: training stopped: [ring]")
    assert line.endswith(
        "another rank probably died or hung (see its log); ending this rank without a report"
    )
    assert not list(tmp_path.glob("out/*/report.json"))


@pytest.mark.distributed
def test_a_local_error_is_the_ranks_own_and_its_peer_sees_a_lost_rank(tmp_path):
    (peer_code, peer_err), (code, stderr) = start_by_hand(
        tmp_path, "--inject-fault", "rank_local_error"
    )
    # Rank 1: MLX's own message, its own exit code, and its report with the checks in error.
    assert code == EXIT_RANK_ERROR, stderr
    (line,) = own_lines(stderr, 1)
    assert "RuntimeError: [load_safetensors] Failed to open file" in line
    assert "this rank's own error, not a lost peer" in line and "died or hung" not in line
    document = report(tmp_path)
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert statuses["ranks_in_sync"] == "error"
    (check,) = [c for c in document["checks"] if c["name"] == "ranks_in_sync"]
    assert "[load_safetensors] Failed to open file" in check["message"]
    # Rank 0 waited in the gradient average for a rank that left: that is a lost peer.
    assert peer_code == EXIT_RANK_LOST, peer_err
    (peer_line,) = own_lines(peer_err, 0)
    assert "another rank probably died or hung" in peer_line


@pytest.mark.parametrize(
    ("message", "lost"),
    [
        ("[ring] connection to a peer was lost", True),
        ("NCCL error: remote process exited or there was a network error", True),
        ("ncclRemoteError: a call failed possibly due to a network error", True),
        ("[all_reduce] collective timed out after 600 s", True),
        ("There is no Stream(gpu, 1) in current thread.", False),
        ("[load_safetensors] Failed to open file /x.safetensors", False),
        ("[metal::malloc] Attempting to allocate 40000000000 bytes", False),
    ],
)
def test_only_a_lost_link_or_timeout_blames_a_peer(message, lost):
    assert distributed.peer_lost(RuntimeError(message)) is lost


def test_an_error_of_another_type_is_never_a_lost_peer():
    assert not distributed.peer_lost(ValueError("[ring] connection to a peer was lost"))
