"""The CLI as a user meets it: exit codes, one-line errors, JSON on stdout, files on disk."""

from __future__ import annotations

import json

import pytest

from lora_harness.cli.list_cmd import markdown_table
from lora_harness.reports import json_report
from lora_harness.runs import suites
from tests.support.helpers import ROOT, assert_one_line_error


def test_gate_on_fixture_passes_and_writes_a_valid_report(cli, tmp_path):
    import jsonschema

    result = cli("run", "--json", "-", "--out", "out")
    assert result.returncode == 0, result.stderr
    report = result.json()
    jsonschema.validate(report, json_report.schema())
    assert report["summary"]["verdict"] == "pass"
    assert report["summary"]["pass"] == len(report["checks"]) == len(suites.GATE)
    generation = report["generation"]
    assert generation["trained_voice_score"] > generation["untrained_voice_score"]
    assert len(report["metrics"]["steps"]) == report["lora"]["iters"]
    run_folder = tmp_path / "out" / report["run"]["id"]
    assert json.loads((run_folder / "report.json").read_text())["run"]["id"] == report["run"]["id"]
    assert (run_folder / "adapters" / "adapters.safetensors").exists()
    assert not list(run_folder.glob(".*")), "atomic writes leave no temporary files"


def test_shape_7b_structure_reports_the_seed_numbers(cli):
    result = cli("run", "--model", "shape:qwen2.5-7b", "--suite", "structure", "--json", "-")
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in result.json()["checks"]}
    for name, value in [
        ("lora_layer_count", 196),
        ("trainable_array_count", 392),
        ("trainable_parameter_count", 20185088),
    ]:
        assert checks[name]["status"] == "pass"
        assert checks[name]["observed"] == checks[name]["expected"] == value


def test_shape_from_config_path_with_lora_flags(cli, tmp_path):
    from lora_harness.models.shapes import CATALOGUE

    config = tmp_path / "config.json"
    config.write_text(json.dumps(CATALOGUE["llama-3.1-8b"]))
    result = cli(
        "run",
        "--model",
        f"shape:{config}",
        "--suite",
        "structure",
        "--json",
        "-",
        "--rank",
        "16",
        "--num-layers",
        "8",
        "--keys",
        "self_attn.q_proj,self_attn.v_proj",
        "--fine-tune-type",
        "dora",
    )
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in result.json()["checks"]}
    # 8 blocks x 2 keys; DoRA: 3 arrays each; q 4096->4096, v 4096->1024 (GQA), + out for m.
    assert checks["lora_layer_count"]["observed"] == 16
    assert checks["trainable_array_count"]["observed"] == 48
    assert checks["trainable_parameter_count"]["observed"] == 8 * (16 * (8192 + 5120) + 5120)


def test_failed_check_exits_1_and_human_output_names_remedy(cli):
    result = cli(
        "run",
        "--model",
        "shape:qwen2.5-7b",
        "--suite",
        "structure",
        "--expect",
        "trainable_arrays=390",
    )
    assert result.returncode == 1
    assert "FAIL  trainable_array_count" in result.stderr
    assert "verdict: FAIL" in result.stderr


def test_json_dash_prints_only_json_on_stdout(cli):
    result = cli("run", "--model", "shape:qwen2.5-0.5b", "--suite", "structure", "--json", "-")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # nothing but the document: any other line breaks it
    assert [c["name"] for c in report["checks"]] == suites.SUITES["structure"].names
    assert report["summary"]["verdict"] == "pass"
    # the human lines still reach the user, on stderr
    assert all(f"PASS  {name}" in result.stderr for name in suites.SUITES["structure"].names)


def test_json_path_is_written(cli, tmp_path):
    result = cli(
        "run",
        "--model",
        "shape:qwen2.5-0.5b",
        "--check",
        "lora_layer_count",
        "--json",
        "r.json",
        "-q",
    )
    assert result.returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["checks"][0]["name"] == "lora_layer_count"


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--model", "no/such/folder/x"], ["no such folder"]),
        (["--model", "shape:gpt-9"], ["unknown shape", "qwen2.5-7b"]),
        (["--model", "shape:qwen2.5-7b", "--num-layers", "40"], ["larger than the model's 28"]),
        (
            ["--model", "shape:qwen2.5-7b", "--keys", "attn.c_attn"],
            ["matched no module", "self_attn.q_proj"],
        ),
        (["--model", "shape:qwen2.5-7b", "--expect", "arrays"], ["NAME=VALUE"]),
        (["--model", "shape:qwen2.5-7b", "--expect", "nope=1"], ["unknown name"]),
        (["--model", "shape:qwen2.5-7b", "--check", "nope"], ["lora-harness list"]),
        (["--num-layers", "0"], ["adapts no block"]),
        (["-c", "missing.yaml"], ["does not exist"]),
        (["--distributed"], ["found a single rank", "mlx.launch -n 2"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, args, fragments):
    assert_one_line_error(cli("run", *args), *fragments)


def test_missing_and_malformed_model_folders(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(cli("run", "--model", str(empty)), "config.json")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert_one_line_error(cli("run", "--model", str(broken)), "not valid JSON")
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "config.json").write_text(
        json.dumps({"model_type": "nosuchmodel", "num_hidden_layers": 2})
    )
    assert_one_line_error(cli("run", "--model", str(alien)), "not supported")


def test_bad_data_folder(cli, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"text": "ok"}\nnot json\n')
    assert_one_line_error(cli("run", "--data", str(data)), "train.jsonl:2")


def test_yaml_config_is_read_and_flags_override_it(cli, tmp_path):
    (tmp_path / "lora.yaml").write_text(
        "num_layers: 4\nlora_parameters:\n  rank: 4\n  scale: 10.0\n  dropout: 0.0\n"
        "  keys: [self_attn.q_proj]\nlearning_rate: 1e-4\n"
    )
    result = cli(
        "run",
        "--model",
        "shape:qwen2.5-7b",
        "--suite",
        "structure",
        "-c",
        "lora.yaml",
        "--rank",
        "2",
        "--json",
        "-",
    )
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["lora"]["rank"] == 2 and report["lora"]["num_layers"] == 4
    assert report["lora"]["learning_rate"] == pytest.approx(1e-4)
    assert report["expectations"]["values"]["lora_layers"] == 4


def test_list_shows_checks_and_suites(cli):
    result = cli("list")
    assert result.returncode == 0
    for name in ("gate", "structure", "frozen_base_unchanged", "trainable_keys_exact"):
        assert name in result.stdout


def test_list_markdown_is_one_row_per_check_with_its_symptom_and_remedy(cli):
    from lora_harness.runs.suites import all_checks

    result = cli("list", "--markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == markdown_table()
    rows = result.stdout.splitlines()[2:]
    checks = all_checks()
    assert len(rows) == len(checks)
    for name, check in checks.items():
        (row,) = [r for r in rows if f"| `{name}` (" in r]
        assert " ".join(check.symptom.split()).replace("|", "\\|") in row
        assert " ".join(check.remedy.split()).replace("|", "\\|") in row
        assert row.count(" | ") == 2, row  # a pipe inside a cell is escaped


def test_the_readmes_check_table_is_list_markdown():
    """The README's table is generated: a new check regenerates it, no one edits it by hand."""
    begin, end = (
        "<!-- lora-harness list --markdown: begin -->\n",
        "<!-- lora-harness list --markdown: end -->",
    )
    readme = (ROOT / "README.md").read_text()
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0]
    assert table == markdown_table(), (
        "README.md's check table is stale: paste `lora-harness list --markdown`"
    )


def test_help_explains_exit_codes(cli):
    result = cli("--help")
    assert "Exit codes" in result.stdout


def test_fixture_export_is_loadable_by_mlx_lm(cli, tmp_path):
    import mlx_lm

    result = cli("fixture", "export", "exported")
    assert result.returncode == 0, result.stderr
    model, tokenizer = mlx_lm.load(str(tmp_path / "exported"))
    assert tokenizer.eos_token == "<|endoftext|>"
    assert len(model.layers) == 4
