"""`lora-harness guard`: mlx-lm's own trainer, checked while it runs and stopped where it breaks."""

from __future__ import annotations

import json

import jsonschema
import mlx.core as mx
import pytest

from lora_harness.cli import main
from lora_harness.reports import json_report


def write_data(folder, rows=24):
    from lora_harness.text.data import default_rows

    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", rows, 0), ("valid", 4, 7)):
        lines = "".join(json.dumps(r) + "\n" for r in default_rows(count, seed=seed))
        (folder / f"{split}.jsonl").write_text(lines)
    return folder


def guard_flags(tmp_path, iters, **extra):
    data = write_data(tmp_path / "data")
    flags = {
        "model": "fixture:tiny",
        "data": str(data),
        "num-layers": -1,
        "iters": iters,
        "batch-size": 2,
        "learning-rate": 1e-3,
        "steps-per-report": 10,
        "steps-per-eval": 100000,
        "val-batches": 1,
        "adapter-path": str(tmp_path / "adapters"),
        "out": str(tmp_path / "out"),
        "inference-format": "text",  # text rows, prompted raw (the voice checks' way)
        **extra,
    }
    return [item for k, v in flags.items() for item in (f"--{k}", str(v))] + ["-q"]


def read_report(tmp_path):
    (report,) = (tmp_path / "out").glob("*/report.json")
    return json.loads(report.read_text())


@pytest.mark.slow
def test_guard_passes_200_iterations_of_mlx_lm_with_checkpoints(tmp_path, fixture_source):
    code = main(["guard", *guard_flags(tmp_path, 200, **{"save-every": 100, "check-every": 50})])
    report = read_report(tmp_path)
    assert code == 0, [c for c in report["checks"] if c["status"] != "pass"]
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["checkpoint_file_exact"]["evidence"]["checked_at_iterations"][:2] == [100, 200]
    assert by_name["frozen_base_unchanged"]["evidence"]["checked_at_iterations"][:4] == [
        50,
        100,
        150,
        200,
    ]
    assert report["guard"]["state"] == "finished" and report["guard"]["iteration"] == 200
    assert (tmp_path / "adapters" / "0000200_adapters.safetensors").exists()
    live = json.loads(next((tmp_path / "out").glob("*/live.json")).read_text())
    assert live["guard"]["state"] == "finished"


def test_guard_stops_a_resume_from_a_nan_checkpoint_at_the_first_check(tmp_path, fixture_source):
    """A realistic fault through the CLI: --resume-adapter-file with NaN in it."""
    from mlx.utils import tree_flatten

    from lora_harness.lora import recipe as recipes
    from lora_harness.lora.lora_config import LoRAConfig

    model, _ = fixture_source.load()
    lora = LoRAConfig(num_layers=-1)
    recipes.CORRECT.freeze(model)
    recipes.CORRECT.convert(model, lora)
    recipes.CORRECT.unfreeze(model, lora)
    weights = dict(tree_flatten(model.trainable_parameters()))
    first = sorted(weights)[0]
    weights[first] = mx.full(weights[first].shape, float("nan"))
    mx.save_safetensors(str(tmp_path / "nan.safetensors"), weights)
    flags = guard_flags(
        tmp_path,
        40,
        **{
            "check-every": 10,
            "save-every": 100,
            "resume-adapter-file": tmp_path / "nan.safetensors",
        },
    )
    assert main(["guard", *flags]) == 1
    report = read_report(tmp_path)
    jsonschema.validate(report, json_report.schema())  # the run report's own schema
    assert {p.name for p in next((tmp_path / "out").glob("*/")).iterdir()} >= {
        "report.json",
        "report.html",
        "junit.xml",
        "live.json",
    }
    stop = report["guard"]["stopped"]
    assert (stop["check"], stop["iteration"]) == ("training_values_finite", 10)
    assert stop["remedy"]


def planted_base_write(at):
    def hook(run, iteration):
        if iteration == at:  # one base weight moves, as an optimizer on model.parameters() would
            block = run.model.layers[0].mlp.down_proj
            block.linear.weight = block.linear.weight + 1e-3

    return hook


def test_guard_stops_a_planted_base_write_at_the_next_check(tmp_path, fixture_source):
    from lora_harness.runs.guard_args import namespace
    from lora_harness.runs.guard_mlx_lm import GuardedRun

    flags = {k.replace("-", "_"): v for k, v in _pairs(guard_flags(tmp_path, 60)).items()}
    flags.pop("inference_format")
    run = GuardedRun(
        namespace(_typed(flags)),
        check_every=10,
        hooks=[planted_base_write(23)],
        inference_format="text",
    )
    run.run()
    stop = run.monitor.stopped
    assert (stop.result.name, stop.iteration) == ("frozen_base_unchanged", 30)
    assert "mlp.down_proj" in stop.result.message and run.monitor.iteration == 30


def _pairs(flags):
    return {flags[i].lstrip("-"): flags[i + 1] for i in range(0, len(flags) - 1, 2)}


def _typed(flags):
    ints = (
        "num_layers",
        "iters",
        "batch_size",
        "steps_per_report",
        "steps_per_eval",
        "val_batches",
        "save_every",
    )
    typed = {k: int(v) if k in ints else v for k, v in flags.items() if k != "out"}
    typed["learning_rate"] = float(typed["learning_rate"])
    return typed


def test_guard_reports_mlx_lms_accumulation_deviation_and_stops_at_start(tmp_path, fixture_source):
    flags = guard_flags(tmp_path, 20, **{"grad-accumulation-steps": 4, "check-every": 10})
    assert main(["guard", *flags]) == 1
    report = read_report(tmp_path)
    stop = report["guard"]["stopped"]
    assert (stop["check"], stop["iteration"]) == ("grad_accumulation_matches_batch", 0)
    (check,) = [c for c in report["checks"] if c["name"] == "grad_accumulation_matches_batch"]
    ev = check["evidence"]
    assert ev["trainer"] == "mlx_lm" and len(set(ev["micro_batch_loss_tokens"])) > 1
    assert ev["deviation"] > ev["allowed"] and "% away from one batch" in check["message"]
    assert ev["updates_with_partial_window"] < ev["expected_updates_with_partial_window"]


def test_guard_stops_text_training_meant_for_chat_prompts_before_step_one(tmp_path, fixture_source):
    flags = guard_flags(tmp_path, 20, **{"inference-format": "auto"})
    assert main(["guard", *flags]) == 1
    stop = read_report(tmp_path)["guard"]["stopped"]
    assert (stop["check"], stop["iteration"]) == ("chat_format_parity", 0)
    assert "plain text" in stop["message"]


def test_guard_check_resume_measures_what_mlx_lms_resume_loses(tmp_path, fixture_source):
    flags = guard_flags(tmp_path, 20, **{"check-every": 10})
    assert main(["guard", *flags, "--check-resume"]) == 1
    report = read_report(tmp_path)
    assert report["guard"]["stopped"]["check"] == "resume_continues_run"
    (check,) = [c for c in report["checks"] if c["name"] == "resume_continues_run"]
    lost = " ".join(check["evidence"]["lost"])
    assert check["evidence"]["trainer"] == "mlx_lm"
    assert "optimizer moments" in lost and "optimizer step" in lost


@pytest.mark.parametrize(
    "change, words",
    [
        ({"model": "/nonexistent"}, "no such folder"),
        ({"data": "/nonexistent"}, "no train.jsonl"),
        ({"check-every": 0}, "--check-every must be >= 1, got 0"),
        ({"num-layers": 16}, "more than the model's 4 blocks"),
    ],
)
def test_guard_bad_input_is_one_line_and_exit_2(tmp_path, fixture_source, capsys, change, words):
    flags = guard_flags(tmp_path, 10)
    for key, value in change.items():
        if f"--{key}" in flags:
            flags[flags.index(f"--{key}") + 1] = str(value)
        else:
            flags += [f"--{key}", str(value)]
    assert main(["guard", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
