"""The gate, a base-breaking fault and the doctor on the real model (SmolLM2-135M-Instruct).

Each trains it (2 steps on 2 pirate rows, float32) and generates; a file apart from
test_real_model.py so that pytest-xdist's --dist loadfile runs the two on two workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_harness.core import cpu_blas
from lora_harness.models import gguf
from lora_harness.models.sources import resolve
from tests.support.real_model import GENERATION_CHECKS, PIRATE, context, run, short_prompts


@pytest.mark.real_model
@pytest.mark.slow
def test_the_gate_passes_on_the_real_model_with_generations_judged(smollm2, tmp_path):
    from lora_harness.runs import suites

    # Long enough for the pirate answers to end at <|im_end|>: the check warns when most
    # generations run to the limit (at 12 tokens two of three did).
    ctx = context("real:smollm2-135m@float32", tmp_path, max_tokens=64)
    results = run(ctx, suites.GATE)
    failed = {n: r.message for n, r in results.items() if r.status not in ("pass", "warn")}
    assert not failed
    for name in GENERATION_CHECKS:
        assert results[name].status == "pass", results[name].message
    assert ctx.generation.prompt_format == "chat"  # chat rows, and a tokenizer with a template
    assert "chat template" in results["no_endoftext_spam"].message


@pytest.mark.real_model
@pytest.mark.slow
def test_a_fault_that_breaks_the_base_is_caught(smollm2, tmp_path):
    from lora_harness.lora.faults import FAULTS
    from lora_harness.lora.lora_config import LoRAConfig

    fault = FAULTS["unfreeze_without_keys"]
    _, recipe = fault.applied_to(LoRAConfig())
    ctx = context("real:smollm2-135m@float32", tmp_path, recipe=recipe)
    result = run(ctx, ["frozen_base_unchanged"])["frozen_base_unchanged"]
    assert result.status == "fail", result.message


@pytest.mark.real_model
@pytest.mark.slow
def test_doctor_passes_an_adapter_mlx_lm_trained_on_chat_rows(smollm2, tmp_path, cli):
    folder = gguf.export(
        Path(resolve("real:smollm2-135m@float32").path), tmp_path / "smollm2-float32"
    )
    adapters = tmp_path / "adapters"
    train = [sys.executable, "-m", "mlx_lm", "lora", "--model", str(folder), "--train"]
    train += ["--data", str(PIRATE), "--iters", "2", "--batch-size", "2", "--num-layers", "2"]
    train += ["--adapter-path", str(adapters), "--max-seq-length", "128", "--steps-per-report", "1"]
    # mlx_lm runs without lora_harness: hand it the OpenBLAS the harness would load.
    blas = cpu_blas.library()
    env = {**os.environ, "LD_PRELOAD": blas} if blas else None
    subprocess.run(train, check=True, capture_output=True, timeout=1200, env=env)
    done = cli(
        "doctor",
        *("--model", str(folder), "--adapter-path", str(adapters), "--json", "-"),
        *("--prompts", str(short_prompts(tmp_path)), "--max-tokens", "64"),
        *("--voice-references", str(PIRATE / "references.txt")),
        timeout=1200,
    )
    report = done.json()
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert done.returncode == 0, (statuses, done.stderr[-2000:])
    # Judged, not skipped. Two mlx_lm steps barely move the model (the adapter changes the
    # logits by ~0.5%), so the instruct model still answers at length and most answers run
    # to the 64-token limit: no_endoftext_spam may warn about that, never fail.
    assert statuses["voice_score_baseline"] == "pass"
    assert statuses["no_endoftext_spam"] in ("pass", "warn")
    assert report["summary"]["verdict"] == "pass" and report["summary"]["fail"] == 0
    assert report["generation"]["prompt_format"] == "chat"
