"""A run folder is complete or clearly incomplete, whatever stops the harness and when."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lora_harness.cli import main
from tests.support.helpers import ROOT

SHAPE = ["--model", "shape:qwen2.5-7b", "--suite", "structure"]


@pytest.mark.slow
def test_sigterm_cleans_temporaries_and_exits_143(tmp_path, fixture_source):
    """SIGTERM once the adapter's temporary folder exists: it is removed, and the exit is 143."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_harness", "run", "-q", "--out", str(tmp_path / "out")],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not list(temporary.glob("lora-harness-adapter-*")):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    stderr = process.communicate(timeout=120)[1]
    assert process.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    left = [p.name for p in temporary.iterdir() if p.name != "mlx"]  # MLX's own kernel cache
    assert not left, "the harness's temporary folders are cleaned up"
    assert not list((tmp_path / "out").rglob("report.json")), "no report for an unfinished run"


def test_interrupt_while_rendering_leaves_no_report_and_no_history(tmp_path, monkeypatch, capsys):
    """Ctrl-C during the HTML: no report.json claims a verdict, and history has no entry."""
    from lora_harness.reports import render

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "write_beside", interrupted)
    argv = ["run", "-q", *SHAPE, "--out", str(tmp_path / "out"), "--history", str(tmp_path / "h")]
    assert main(argv) == 130
    assert not list((tmp_path / "out").rglob("report.json"))
    assert not (tmp_path / "h").exists() or not list((tmp_path / "h").iterdir())


def test_history_entry_points_to_a_written_report(tmp_path):
    out, history = tmp_path / "out", tmp_path / "h"
    assert main(["run", "-q", *SHAPE, "--out", str(out), "--history", str(history)]) == 0
    (entry,) = [json.loads(line) for f in history.iterdir() for line in f.read_text().splitlines()]
    report = out / entry["run_id"] / "report.json"
    assert report.exists()
    assert {p.name for p in report.parent.iterdir()} >= {"report.json", "report.html", "junit.xml"}


def _lora_model(source):
    from lora_harness.lora import trainer
    from lora_harness.lora.lora_config import LoRAConfig

    model, _ = source.load()
    lora = LoRAConfig(rank=2)
    trainer.prepare_lora_model(model, lora)
    return model, lora


def test_adapter_save_is_atomic(fixture_source, tmp_path, monkeypatch):
    import mlx.core as mx

    from lora_harness.lora import adapters

    model, lora = _lora_model(fixture_source)
    folder = adapters.save_adapter(model, lora, tmp_path / "a")
    assert {p.name for p in tmp_path.iterdir()} == {"a"}, "no staging folder is left"
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapters.safetensors"}
    adapters.save_adapter(model, lora, folder)  # into an existing folder: replaced in place
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapters.safetensors"}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mx, "save_safetensors", interrupted)
    with pytest.raises(KeyboardInterrupt):
        adapters.save_adapter(model, lora, tmp_path / "b")
    assert not (tmp_path / "b").exists(), "an interrupted save leaves no adapter folder"
    assert {p.name for p in tmp_path.iterdir()} == {"a"}


def test_train_into_the_same_folder_starts_a_fresh_metrics_file(tmp_path, fixture_cache):
    folder = tmp_path / "adapters"
    for iters in ("3", "2"):
        argv = ["train", "-q", "--iters", iters, "--batch-size", "2", "--adapter-path", str(folder)]
        assert main(argv) == 0
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 2


def test_corrupt_fixture_cache_is_detected_by_hash(fixture_source, tmp_path):
    import shutil

    from lora_harness.models import manifest

    assert manifest.verify(fixture_source.path) is None
    copy = Path(shutil.copytree(fixture_source.path, tmp_path / "copy"))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"\0" * 10)
    assert "model.safetensors does not match its hash" in manifest.verify(copy)
    shutil.copy2(fixture_source.path / "model.safetensors", weights)
    (copy / "tokenizer.json").unlink()
    assert "missing" in manifest.verify(copy)
