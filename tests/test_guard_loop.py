"""watch(guard=...): the user's own loop, checked every N steps and at each checkpoint it saves."""

from __future__ import annotations

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from lora_harness.lora import trainer
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs.guard_monitor import GuardStop
from lora_harness.runs.model_part import ModelPart
from lora_harness.runs.watch import watch


@pytest.fixture
def part(fixture_source):
    return ModelPart(
        fixture_source, LoRAConfig(num_layers=-1, learning_rate=1e-3), CORRECT, None, None, "sft"
    )


def user_loop(part, tmp_path, steps=20, check_every=5, save_every=10, plant=None, save=None):
    """A user's loop: its own compiled step, its own saves; the guard sees on_loss/on_save."""
    model = part.lora_model
    optimizer = trainer.make_optimizer(model, part.lora)
    from lora_harness.checks.lr_schedule_applied import ScheduleProbe

    guard = {
        "check_every": check_every,
        "tokenizer": part.tokenizer,
        "has_text": True,
        "context": {"schedule": ScheduleProbe(part.lora.learning_rate)},  # the loop's own lr
    }
    with watch(model, optimizer, lora=part.lora, config=part.source.config, guard=guard) as w:
        w.monitor.last_batch = part.probe_batch
        step = trainer.make_step(model, optimizer)
        for i in range(1, steps + 1):
            loss, _ = step(*part.probe_batch)
            mx.eval(model.state, optimizer.state, loss)
            if plant:
                plant(i, model)
            w.on_loss(i, loss)
            if i % save_every == 0:
                path = tmp_path / f"{i:07d}_adapters.safetensors"
                (save or _save)(model, path)
                w.on_save(i, path)
    return w


def _save(model, path):
    mx.save_safetensors(str(path), dict(tree_flatten(model.trainable_parameters())))


def test_a_clean_user_loop_passes_every_moment(part, tmp_path):
    w = user_loop(part, tmp_path)
    statuses = {name: r.status for name, r in w.monitor.results.items()}
    assert set(statuses.values()) == {"pass"}, statuses
    assert w.monitor.results["checkpoint_file_exact"].evidence["checked_at_iterations"] == [10, 20]
    assert w.monitor.results["frozen_base_unchanged"].evidence["checked_at_iterations"][:2] == [
        5,
        10,
    ]


def test_a_base_write_mid_run_stops_the_loop_at_the_next_check(part, tmp_path):
    def plant(i, model):
        if i == 7:
            layer = model.layers[1].self_attn.o_proj
            layer.linear.weight = layer.linear.weight * 1.01

    with pytest.raises(GuardStop) as stop:
        user_loop(part, tmp_path, plant=plant)
    assert (stop.value.result.name, stop.value.iteration) == ("frozen_base_unchanged", 10)
    assert "o_proj" in str(stop.value) and stop.value.result.remedy in str(stop.value)


def test_a_checkpoint_of_the_whole_model_fails_at_its_save(part, tmp_path):
    def save_everything(model, path):
        mx.save_safetensors(str(path), dict(tree_flatten(model.parameters())))

    with pytest.raises(GuardStop) as stop:
        user_loop(part, tmp_path, save=save_everything)
    assert (stop.value.result.name, stop.value.iteration) == ("checkpoint_file_exact", 10)
    assert "not adapters" in stop.value.result.message


def test_a_stale_checkpoint_fails_as_different_from_memory(part, tmp_path):
    stale = {}

    def save_stale(model, path):  # the adapters of the first save, written again later
        weights = stale.setdefault(
            "w", {k: mx.array(v) for k, v in tree_flatten(model.trainable_parameters())}
        )
        mx.save_safetensors(str(path), weights)

    with pytest.raises(GuardStop) as stop:
        user_loop(part, tmp_path, save=save_stale)
    assert (stop.value.result.name, stop.value.iteration) == ("checkpoint_file_exact", 20)
    assert "differ from the adapters at the save" in stop.value.result.message


def test_generation_probe_fails_on_nan_logits_and_passes_clean(part, tmp_path):
    from lora_harness.core.checking import REGISTRY
    from lora_harness.runs.guard_monitor import Moment

    w = user_loop(part, tmp_path, steps=2, check_every=100, save_every=100)
    moment = Moment(w.monitor, w.monitor.outcome(), 2)
    assert REGISTRY["generation_probe"]().run(moment).status == "pass"
    norm = part.lora_model.model.norm
    norm.weight = mx.full(norm.weight.shape, float("nan"))
    result = REGISTRY["generation_probe"]().run(moment)
    assert result.status == "fail" and "NaN" in result.message
