"""The trainer writes mlx-lm's adapter format, and mlx_lm.load applies it faithfully."""

from __future__ import annotations

import json

import mlx.core as mx
import mlx_lm
import pytest

from lora_harness.lora.adapters import save_adapter
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import probe_logits
from lora_harness.runs.context import RunContext


@pytest.mark.parametrize("fine_tune_type", ["lora", "dora"])
def test_saved_adapter_loads_through_mlx_lm_with_identical_logits(
    fixture_source, tmp_path, fine_tune_type
):
    ctx = RunContext(
        fixture_source,
        LoRAConfig(fine_tune_type=fine_tune_type, keys=["self_attn.q_proj", "mlp.down_proj"]),
    )
    ctx.training  # noqa: B018
    folder = save_adapter(ctx.model.lora_model, ctx.lora, tmp_path / "adapters")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == fine_tune_type
    assert config["lora_parameters"]["keys"] == ["self_attn.q_proj", "mlp.down_proj"]
    loaded, _ = mlx_lm.load(str(fixture_source.path), adapter_path=str(folder))
    tokens = ctx.model.probe_batch[0]
    trained = probe_logits(ctx.model.lora_model, tokens)
    assert mx.array_equal(probe_logits(loaded, tokens), trained).item()
    base, _ = mlx_lm.load(str(fixture_source.path))
    assert not mx.allclose(probe_logits(base, tokens), trained).item()


def test_step_metrics_reach_callbacks(fixture_source):
    seen = []
    ctx = RunContext(fixture_source, LoRAConfig(iters=3), step_callbacks=[seen.append])
    ctx.training  # noqa: B018
    assert [m["iteration"] for m in seen] == [1, 2, 3]
    assert all(m["loss_tokens"] > 0 and m["peak_memory_gb"] >= 0 for m in seen)
