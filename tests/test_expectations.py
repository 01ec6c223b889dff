"""Derived expectations equal what mlx-lm's converter really produces, for any small config."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlx.utils import tree_flatten
from mlx_lm.tuner.utils import linear_to_lora_layers

from lora_harness.core.errors import InputError
from lora_harness.lora import expectations
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import adapter_module_names
from lora_harness.models.sources import build_from_config, resolve

FAMILY_KEYS = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]


def actual_counts(model, lora: LoRAConfig) -> dict:
    """What linear_to_lora_layers really does, measured on the converted model."""
    model.freeze()
    linear_to_lora_layers(model, lora.num_layers, lora.lora_parameters(), use_dora=lora.use_dora)
    trainable = tree_flatten(model.trainable_parameters())
    return {
        "lora_layers": len(adapter_module_names(model)),
        "trainable_arrays": len(trainable),
        "trainable_parameters": sum(a.size for _, a in trainable),
        "keys": {name for name, _ in trainable},
    }


def test_qwen25_7b_numbers_from_the_seed():
    source = resolve("shape:qwen2.5-7b")
    model, _ = source.load()
    derived = expectations.derive(source.config, model, LoRAConfig(rank=8)).derived()
    assert derived == {
        "lora_layers": 196,
        "trainable_arrays": 392,
        "trainable_parameters": 20185088,
    }


@st.composite
def small_configs(draw):
    kv_heads = draw(st.sampled_from([1, 2, 4]))
    heads = kv_heads * draw(st.sampled_from([1, 2]))
    head_dim = draw(st.sampled_from([4, 8]))
    blocks = draw(st.integers(1, 4))
    config = {
        "model_type": draw(st.sampled_from(["qwen2", "llama"])),
        "hidden_size": heads * head_dim,
        "num_hidden_layers": blocks,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": draw(st.sampled_from([8, 24, 40])),
        "vocab_size": 32,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    }
    keys = draw(
        st.one_of(st.none(), st.lists(st.sampled_from(FAMILY_KEYS), min_size=1, unique=True))
    )
    lora = LoRAConfig(
        rank=draw(st.integers(1, 8)),
        num_layers=draw(st.one_of(st.just(-1), st.integers(1, blocks))),
        keys=keys,
        fine_tune_type=draw(st.sampled_from(["lora", "dora"])),
    )
    return config, lora


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_configs())
def test_derived_expectations_match_linear_to_lora_layers(case):
    config, lora = case
    base = build_from_config(config)
    expected = expectations.derive(config, base, lora)
    actual = actual_counts(build_from_config(config), lora)
    assert expected.derived() == {k: v for k, v in actual.items() if k != "keys"}
    assert expected.trainable_keys() == actual["keys"]


@settings(max_examples=25, deadline=None)
@given(small_configs())
def test_config_formula_agrees_with_a_walk_of_the_model(case):
    config, _ = case
    model = build_from_config(config)
    from_config = expectations._family_block_shapes(config)
    for block in model.layers:
        assert expectations._walk_block(block) == from_config


def test_keys_matching_nothing_is_an_input_error():
    source = resolve("shape:qwen2.5-0.5b")
    model, _ = source.load()
    with pytest.raises(InputError, match="matched no module"):
        expectations.derive(source.config, model, LoRAConfig(keys=["attn.c_attn"]))


def test_num_layers_larger_than_model_is_an_input_error():
    source = resolve("shape:qwen2.5-0.5b")
    model, _ = source.load()
    with pytest.raises(InputError, match="larger than the model's 24 blocks"):
        expectations.derive(source.config, model, LoRAConfig(num_layers=40))


@pytest.mark.parametrize(
    "pin, message",
    [
        ("trainable_arrays", "not NAME=VALUE"),
        ("bogus=3", "unknown name"),
        ("trainable_arrays=lots", "not a number"),
    ],
)
def test_bad_pins_are_input_errors(pin, message):
    with pytest.raises(InputError, match=message):
        expectations.parse_pins([pin])


def test_pinned_value_wins_over_derived():
    source = resolve("shape:qwen2.5-7b")
    model, _ = source.load()
    pins = expectations.parse_pins(["trainable_arrays=400"])
    expected = expectations.derive(source.config, model, LoRAConfig(), pins)
    assert expected.value("trainable_arrays") == 400
    assert expected.derived()["trainable_arrays"] == 392


def test_walk_handles_models_outside_the_config_families():
    # phi3 fuses q/k/v and gate/up: the count must come from the real module tree.
    config = {
        "model_type": "phi3",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "vocab_size": 64,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128,
        "original_max_position_embeddings": 128,
        "rope_theta": 10000.0,
    }
    lora = LoRAConfig(rank=4)
    expected = expectations.derive(config, build_from_config(config), lora)
    assert expected.derived_from == "model-structure"
    actual = actual_counts(build_from_config(config), lora)
    assert expected.derived() == {k: v for k, v in actual.items() if k != "keys"}


MOE_CONFIGS = {
    "mixtral": {
        "model_type": "mixtral",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 24,
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "vocab_size": 64,
        "rms_norm_eps": 1e-5,
    },
    "qwen2_moe": {
        "model_type": "qwen2_moe",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 24,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "vocab_size": 64,
        "rms_norm_eps": 1e-6,
    },
}


@pytest.mark.parametrize("model_type", sorted(MOE_CONFIGS))
@pytest.mark.parametrize("num_layers", [-1, 1])
def test_mixture_of_experts_blocks_match_the_converter(model_type, num_layers):
    config = MOE_CONFIGS[model_type]
    lora = LoRAConfig(rank=4, num_layers=num_layers)
    expected = expectations.derive(config, build_from_config(config), lora)
    converted = build_from_config(config)
    actual = actual_counts(converted, lora)
    assert expected.derived() == {k: v for k, v in actual.items() if k != "keys"}
    assert expected.trainable_keys() == actual["keys"]
    real_shapes = {name: a.shape for name, a in tree_flatten(converted.trainable_parameters())}
    assert expected.adapter_shapes() == real_shapes
    assert any(p.experts == 4 for p in expected.projections)


def test_dora_on_expert_layers_is_an_input_error():
    config = MOE_CONFIGS["mixtral"]
    with pytest.raises(InputError, match="DoRA does not support mixture-of-experts"):
        expectations.derive(config, build_from_config(config), LoRAConfig(fine_tune_type="dora"))


def test_quantized_expert_layers_report_their_logical_sizes():
    import mlx.nn as nn

    config = {**MOE_CONFIGS["mixtral"], "intermediate_size": 64}  # quantized in groups of 32
    lora = LoRAConfig(rank=4)

    def quantized():
        model = build_from_config(config)
        nn.quantize(model, group_size=32, bits=4)
        return model

    expected = expectations.derive(config, quantized(), lora)
    assert {p.in_dims for p in expected.projections if p.experts} == {32, 64}
    actual = actual_counts(quantized(), lora)
    assert expected.derived() == {k: v for k, v in actual.items() if k != "keys"}


def test_mixtral_shape_counts_experts_as_one_stacked_pair_each():
    source = resolve("shape:mixtral-8x7b")
    model, _ = source.load()
    expected = expectations.derive(source.config, model, LoRAConfig(rank=8))
    # per block: q, k, v, o, the router and three expert projections (8 experts each)
    assert expected.derived()["lora_layers"] == 32 * 8
    actual = actual_counts(model, LoRAConfig(rank=8))
    assert expected.derived() == {k: v for k, v in actual.items() if k != "keys"}
