"""The minimal DPO trainer: its checks pass on the correct recipe and fail on their faults."""

from __future__ import annotations

import json

import pytest

from lora_harness.lora.faults import DPO_FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs import suites
from lora_harness.runs.context import RunContext

pytestmark = pytest.mark.slow  # each test trains the DPO policy and its reference


def dpo_gate(source, recipe=None):
    kwargs = {"recipe": recipe} if recipe else {}
    ctx = RunContext(source, LoRAConfig(), trainer_kind="dpo", **kwargs)
    return {r.name: r for r in suites.run_checks(ctx, suites.DPO)}, ctx


def test_dpo_checks_pass_on_the_correct_recipe(fixture_source):
    results, ctx = dpo_gate(fixture_source)
    assert {n: r.message for n, r in results.items() if r.status != "pass"} == {}
    assert ctx.training.dpo.margin_before == 0.0  # lora_b = 0: policy == reference at init


@pytest.mark.parametrize("fault", list(DPO_FAULTS))
def test_dpo_faults_fail_every_check_that_declares_them(fixture_source, fault):
    # The checks' own `catches` say which DPO check catches which fault; run, not trusted.
    declared = suites.catchers(fault, suites.DPO)
    assert declared, f"no dpo check declares {fault}"
    results, _ = dpo_gate(fixture_source, DPO_FAULTS[fault].recipe)
    assert {n: results[n].status for n in declared} == dict.fromkeys(declared, "fail")
    assert "error" not in {r.status for r in results.values()}


def test_dpo_checks_skip_outside_dpo(fixture_source):
    ctx = RunContext(fixture_source, LoRAConfig())
    results = suites.run_checks(ctx, ["reference_unchanged"])
    assert results[0].status == "skip" and "--trainer dpo" in results[0].message


def test_cli_dpo_with_user_pairs(cli, tmp_path):
    data = tmp_path / "prefs"
    data.mkdir()
    rows = [
        {
            "prompt": "On the matter of the river:",
            "chosen": "Well, I reckon it's fine.",
            "rejected": "It should be noted that it is adequate.",
        }
    ] * 4
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("run", "--trainer", "dpo", "--data", str(data), "--json", "-", "-q", "--out", "o")
    assert result.returncode == 0, result.stderr
    report = result.json()
    assert report["run"]["suite"] == "dpo"
    assert {c["name"] for c in report["checks"]} == set(suites.DPO)
    (data / "train.jsonl").write_text(json.dumps({"text": "no pairs"}) + "\n")
    bad = cli("run", "--trainer", "dpo", "--data", str(data), "-q", "--out", "o")
    assert bad.returncode == 2 and "prompt, chosen and rejected" in bad.stderr
