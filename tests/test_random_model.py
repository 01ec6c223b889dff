"""`random:<shape>`: the real architecture with seeded random weights and the fixture tokenizer."""

from __future__ import annotations

import json

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from lora_harness.core.errors import InputError
from lora_harness.core.fingerprint import fingerprint
from lora_harness.models.sources import resolve
from tests.support.helpers import TINY, run_gate


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    return path


def test_a_catalogue_shape_resolves_in_its_published_dtype_without_building_anything():
    source = resolve("random:qwen2.5-7b")
    assert (source.kind, source.dtype, source.has_weights) == ("random", "bfloat16", True)
    assert source.random_weights and source.config["hidden_size"] == 3584


def test_weights_are_drawn_from_the_seed_in_the_asked_dtype(tiny_config):
    source = resolve(f"random:{tiny_config}@float16")
    (model, tokenizer), (again, _) = source.load(), source.load()
    weights = dict(tree_flatten(model.parameters()))
    assert {w.dtype for w in weights.values()} == {mx.float16}
    assert fingerprint(weights) == fingerprint(dict(tree_flatten(again.parameters())))
    assert tokenizer.eos_token == "<|endoftext|>"  # the fixture's tokenizer
    assert resolve(f"random:{tiny_config}").dtype == "float32"  # the config's torch_dtype


@pytest.mark.parametrize(
    "spec, words",
    [("random:qwen2.5-7b@int4", "cannot be drawn"), ("random:no-such-shape", "unknown shape")],
)
def test_bad_random_specs_are_input_errors(spec, words):
    with pytest.raises(InputError, match=words):
        resolve(spec)


@pytest.mark.slow
def test_the_gate_passes_with_generation_checks_skipped_as_random_weights(tiny_config):
    results = run_gate(resolve(f"random:{tiny_config}"))
    skipped = {name for name, r in results.items() if r.status == "skip"}
    assert skipped == {"no_endoftext_spam", "voice_score_baseline"}
    assert all(results[name].message.startswith("random weights") for name in skipped)
    assert {r.status for name, r in results.items() if name not in skipped} == {"pass"}, {
        name: r.message for name, r in results.items() if r.status != "pass"
    }


@pytest.mark.parametrize(
    "spec",
    ["fixture:tiny", "fixture:tiny-q4", "random:qwen2.5-7b", "shape:qwen2.5-0.5b", "TINY"],
)
def test_the_default_learning_rate_follows_the_width_of_the_model(tmp_path, spec):
    """On H100 a random 7B diverged at the fixture's 1e-3 (12.7 -> 28); at 1e-3 x 64/3584 it fell to 0.07."""
    from lora_harness.models.fixture import RECIPES
    from lora_harness.runs.given import lora_config_from

    if spec == "TINY":
        (tmp_path / "config.json").write_text(json.dumps({**TINY, "hidden_size": 256}))
        spec = f"random:{tmp_path / 'config.json'}"
    width = resolve(spec).config["hidden_size"] if spec.startswith(("random", "shape")) else 64
    assert RECIPES["tiny"].hidden_size == 64
    assert lora_config_from({"model": spec}).learning_rate == pytest.approx(
        1e-3 * min(1, 64 / width)
    )


def test_a_given_learning_rate_wins_and_an_unknown_width_gets_mlx_lms_default(tmp_path):
    from lora_harness.runs.given import lora_config_from

    # mlx-lm's scale is absolute, so one Adam step moves the output in proportion to the rank
    assert lora_config_from({"model": "fixture:tiny", "rank": 32}).learning_rate == 2.5e-4

    config = tmp_path / "lora.yaml"
    config.write_text("learning_rate: 2.0e-4\n")
    assert (
        lora_config_from({"model": "random:qwen2.5-7b", "learning_rate": 0.01}).learning_rate
        == 0.01
    )
    assert (
        lora_config_from({"model": "random:qwen2.5-7b", "config": str(config)}).learning_rate
        == 2e-4
    )
    assert lora_config_from({"model": "nobody/uncached-model"}).learning_rate == 1e-5
