"""The doctor on a real mlx_lm.lora adapter (its CLI, on the exported fixture), then on broken copies."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import mlx.core as mx
import pytest

from lora_harness.text import corpus

pytestmark = [
    pytest.mark.filterwarnings("ignore"),
    pytest.mark.slow,  # trains adapters (one with mlx_lm.lora) and runs the doctor on them
]


def _train_with_mlx_lm(folder, model_dir):
    """`python -m mlx_lm lora` itself trains an adapter on `model_dir` into folder/adapters."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "lora",
            "--model",
            str(model_dir),
            "--train",
            "--data",
            str(folder),
            "--iters",
            "30",
            "--batch-size",
            "4",
            "--num-layers",
            "-1",
            "--learning-rate",
            "1e-3",
            "--adapter-path",
            str(folder / "adapters"),
            "--steps-per-eval",
            "1000",
            "--val-batches",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    return folder


def _data(folder):
    rows = [json.dumps({"text": t}) + "\n" for t in corpus.corpus("folksy", 64, seed=3)]
    (folder / "train.jsonl").write_text("".join(rows))
    (folder / "valid.jsonl").write_text("".join(rows[:8]))
    (folder / "references.txt").write_text("\n".join(corpus.corpus("folksy", 24, seed=5)) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, fixture_cache):
    """An adapter trained by `python -m mlx_lm lora` itself on `lora-harness fixture export`."""
    folder = tmp_path_factory.mktemp("mlx-lm-lora")
    subprocess.run(
        [sys.executable, "-m", "lora_harness", "fixture", "export", str(folder / "model")],
        check=True,
    )
    _data(folder)
    return _train_with_mlx_lm(folder, folder / "model")


@pytest.fixture(scope="module")
def trained_q4(tmp_path_factory, fixture_cache):
    """QLoRA: `mlx_lm lora` on the 4-bit fixture that mlx_lm.convert made."""
    from lora_harness.models.fixture import fixture_path

    folder = tmp_path_factory.mktemp("mlx-lm-qlora")
    shutil.copytree(fixture_path("tiny-q4"), folder / "model")
    _data(folder)
    return _train_with_mlx_lm(folder, folder / "model")


def doctor(cli, folder, adapters, *extra):
    return cli(
        "doctor",
        "--model",
        str(folder / "model"),
        "--adapter-path",
        str(adapters),
        "--json",
        "-",
        "--out",
        "o",
        *extra,
    )


def statuses(result) -> dict:
    return {c["name"]: c["status"] for c in result.json()["checks"]}


def corrupted(trained, tmp_path, change):
    copy = tmp_path / "adapters"
    shutil.copytree(trained / "adapters", copy)
    tensors = mx.load(str(copy / "adapters.safetensors"))
    change(tensors)
    mx.save_safetensors(str(copy / "adapters.safetensors"), tensors)
    return copy


def test_adapter_from_mlx_lm_lora_passes(cli, trained):
    references = str(trained / "references.txt")
    result = doctor(cli, trained, trained / "adapters", "--voice-references", references)
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["summary"]["verdict"] == "pass"
    assert (
        report["generation"]["trained_voice_score"] > report["generation"]["untrained_voice_score"]
    )


def test_without_references_the_voice_is_not_scored(cli, trained):
    # The built-in references are the fixture's voice, not the one a user's adapter learned.
    result = doctor(cli, trained, trained / "adapters")
    assert result.returncode == 0, result.stderr
    (voice,) = [c for c in result.json()["checks"] if c["name"] == "voice_score_baseline"]
    assert voice["status"] == "skip"
    assert voice["message"] == "pass --voice-references to score the voice"


def test_adapter_from_mlx_lm_lora_on_a_4bit_base_passes(cli, trained_q4):
    result = doctor(cli, trained_q4, trained_q4 / "adapters")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["summary"]["fail"] == report["summary"]["error"] == 0
    (fuse,) = [c for c in report["checks"] if c["name"] == "fuse_equivalence"]
    assert fuse["evidence"]["precision"]["bits"] == 4
    assert fuse["evidence"]["ratio"] <= 0.5


def _drop(tensors):
    tensors.pop(sorted(n for n in tensors if n.endswith("lora_a"))[0])


def _wrong_shape(tensors):
    name = sorted(n for n in tensors if n.endswith("lora_a"))[0]
    tensors[name] = mx.zeros((tensors[name].shape[0], tensors[name].shape[1] + 2))


def _foreign(tensors):
    tensors["model.layers.0.mlp.gate_proj.weight"] = mx.zeros((128, 64))


def _nan(tensors):
    name = sorted(n for n in tensors if n.endswith("lora_b"))[0]
    tensors[name] = mx.full(tensors[name].shape, float("nan"))


def _int32(tensors):
    name = sorted(n for n in tensors if n.endswith("lora_a"))[0]
    tensors[name] = (tensors[name] * 100).astype(mx.int32)


@pytest.mark.parametrize(
    "change, failing",
    [
        (_drop, {"adapter_file_exact"}),
        (_wrong_shape, {"adapter_file_exact", "adapter_config_consistent", "adapter_applied"}),
        (_foreign, {"adapter_file_exact", "adapter_applied", "fuse_equivalence"}),
        (_nan, {"adapter_tensors_finite", "adapter_applied", "fuse_equivalence"}),
        (_int32, {"adapter_file_exact"}),
    ],
    ids=["dropped-tensor", "wrong-shape", "foreign-key", "nan", "int32-lora-a"],
)
def test_corrupted_adapters_are_findings(cli, trained, tmp_path, change, failing):
    result = doctor(cli, trained, corrupted(trained, tmp_path, change))
    assert result.returncode == 1, result.stderr
    observed = {n for n, s in statuses(result).items() if s == "fail"}
    assert failing <= observed
    assert "error" not in statuses(result).values()
    messages = {c["name"]: c["message"] for c in result.json()["checks"]}
    if change is _nan:  # every check names the cause: non-finite values, not "not applied"
        assert "not applied" not in messages["adapter_applied"]
        assert "not finite" in messages["adapter_applied"]
        assert "not finite" in messages["fuse_equivalence"]
    if change is _int32:
        assert "not floating point" in messages["adapter_file_exact"]


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("truncate", "corrupt or truncated"),
        ("bad-json", "not valid JSON"),
        ("no-tensors", "adapters.safetensors is missing"),
    ],
)
def test_unreadable_adapter_folders_are_one_line_errors(cli, trained, tmp_path, damage, fragment):
    copy = tmp_path / "adapters"
    shutil.copytree(trained / "adapters", copy)
    tensors = copy / "adapters.safetensors"
    if damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])
    elif damage == "bad-json":
        (copy / "adapter_config.json").write_text("{oops")
    else:
        tensors.unlink()
    result = doctor(cli, trained, copy)
    assert result.returncode == 2
    assert fragment in result.stderr and "Traceback" not in result.stderr
