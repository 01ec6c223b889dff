"""No false alarms on the formats people train on, and every numeric check still bites there.

The bf16 and 4-bit fixtures are made by mlx_lm.convert from the fixture, once per session.
Each numeric check is shown passing on the clean recipe and failing on its fault in bf16
and 4-bit (fp32: tests/test_checks.py).
"""

from __future__ import annotations

import dataclasses
import os

import mlx.core as mx
import pytest

from lora_harness.core import numerics
from lora_harness.lora.faults import FAULTS
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT
from lora_harness.runs import suites
from lora_harness.runs.context import RunContext
from tests.support.helpers import run_gate

pytestmark = pytest.mark.slow  # every test converts a format variant and trains on it

FORMATS = ["tiny", "tiny-bf16", "tiny-q4"]
NUMERIC = ["identity_at_init", "adapter_roundtrip", "adapter_applied", "fuse_equivalence"]


@pytest.fixture(scope="session")
def formats(fixture_cache):
    from lora_harness.models.sources import resolve

    return {name: resolve(f"fixture:{name}") for name in FORMATS}


def _checks(source, names, recipe=CORRECT, **lora_changes):
    lora = dataclasses.replace(LoRAConfig(), **lora_changes)
    ctx = RunContext(source, lora, recipe=recipe)
    return {r.name: r for r in suites.run_checks(ctx, names)}


def test_variants_are_what_mlx_lm_convert_makes(formats):
    import mlx_lm

    model, _ = mlx_lm.load(str(formats["tiny-bf16"].path))
    assert numerics.precision_of(model).dtype == "bfloat16"
    model, _ = mlx_lm.load(str(formats["tiny-q4"].path))
    precision = numerics.precision_of(model)
    assert (precision.bits, precision.group_size, precision.mode) == (4, 64, "affine")
    assert formats["tiny-q4"].config["quantization"]["bits"] == 4


@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-q4"])
def test_gate_is_clean_on_each_format(formats, name):
    results = run_gate(formats[name])
    alarms = {n: r.message for n, r in results.items() if r.status != "pass"}
    assert alarms == {}
    fuse = results["fuse_equivalence"].evidence
    assert fuse["fused_vs_adapter"] <= fuse["allowed"]
    assert fuse["ratio"] <= numerics.FUSE_MAX_RATIO
    assert {"noise_floor", "base_vs_adapter", "precision"} <= set(fuse)


# fault -> the numeric checks it must fail, in every format.
FAULT_CHECKS = {
    "nonzero_lora_b_init": ["identity_at_init"],
    "fuse_drops_delta": ["fuse_equivalence"],
    "adapter_saved_not_applied": ["adapter_roundtrip", "adapter_applied", "fuse_equivalence"],
    "huge_scale": ["adapter_applied", "fuse_equivalence"],
}


# fp32: tests/test_checks.py asserts the whole fault x check matrix there.
@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-q4"])
@pytest.mark.parametrize("fault_name", sorted(FAULT_CHECKS))
def test_numeric_checks_fail_on_their_fault_in_every_format(formats, name, fault_name):
    fault = FAULTS[fault_name]
    results = _checks(formats[name], NUMERIC, fault.recipe, **fault.lora_overrides)
    failing = {n for n, r in results.items() if r.status == "fail"}
    assert set(FAULT_CHECKS[fault_name]) <= failing, {n: r.message for n, r in results.items()}
    assert "error" not in {r.status for r in results.values()}


def _save_nan_adapter(model, lora, folder):
    from lora_harness.lora.adapters import adapter_weights, save_adapter

    weights = adapter_weights(model)
    name = sorted(n for n in weights if n.endswith("lora_b"))[0]
    weights[name] = mx.full(weights[name].shape, float("nan"))
    return save_adapter(model, lora, folder, weights=weights)


@pytest.mark.parametrize("name", ["tiny", "tiny-q4"])
def test_nan_adapter_is_diagnosed_as_non_finite_not_as_unapplied(formats, name):
    recipe = dataclasses.replace(CORRECT, save=_save_nan_adapter)
    results = _checks(formats[name], NUMERIC, recipe)
    for check in ("adapter_applied", "fuse_equivalence", "adapter_roundtrip"):
        assert results[check].status == "fail", results[check].message
    assert "not finite" in results["adapter_applied"].message
    assert "not applied" not in results["adapter_applied"].message
    assert "not finite" in results["fuse_equivalence"].message
    assert results["fuse_equivalence"].evidence["fused_vs_adapter"] == "nan"


@pytest.mark.parametrize("part", ["weight", "scales", "biases"])
def test_frozen_base_covers_packed_weights_scales_and_biases(formats, part):
    # A trainer that writes into the quantised base during training, one part at a time.
    contexts = []

    def drift(_metrics):
        layer = contexts[0].model.lora_model.model.layers[0].self_attn.q_proj.linear
        value = getattr(layer, part)
        setattr(layer, part, value + 1 if part == "weight" else value * 1.001)

    contexts.append(RunContext(formats["tiny-q4"], LoRAConfig(), step_callbacks=[drift]))
    result = suites.run_checks(contexts[0], ["frozen_base_unchanged"])[0]
    assert result.status == "fail", result.message
    assert result.message.endswith(f"q_proj.linear.{part})"), result.message
    # The clean run passing on the same model: test_gate_is_clean_on_each_format[tiny-q4].


def test_qlora_expectations_walk_quantized_linears(formats):
    import mlx_lm

    from lora_harness.lora import expectations

    model, _ = mlx_lm.load(str(formats["tiny-q4"].path))
    config = formats["tiny-q4"].config
    walked = expectations._walk_block(model.layers[0])
    family = expectations._family_block_shapes(config)
    assert {k: walked[k] for k in family} == family


def test_fuse_can_dequantize_like_mlx_lm_fuse(formats):
    from lora_harness.lora.adapters import fuse_with_mlx_lm

    ctx = RunContext(formats["tiny-q4"], LoRAConfig())
    model = ctx.adapter.load_with_adapter()
    fuse_with_mlx_lm(model, dequantize=True)
    assert not numerics.precision_of(model.model.layers[0].self_attn).quantized
    distance = numerics.relative_distance(ctx.model.logits(model), ctx.adapter.loaded_logits)
    # Each block's merged weights are rounded once and the blocks run in sequence: one
    # rounding per block (measured 4.0e-7 and 6.2e-7 over 4 blocks; the model's own
    # tolerance, one rounding, is 4.8e-7 with a zero noise floor, and failed CI once).
    floor = ctx.model.noise_floor or 0.0
    blocks = formats["tiny-q4"].config["num_hidden_layers"]
    allowed = numerics.allowed_difference(ctx.model.precision, floor, roundings=blocks)
    assert distance <= allowed, (distance, allowed)
    assert mx.isfinite(mx.array(distance)).item()


@pytest.mark.skipif(
    not os.environ.get("LORA_HARNESS_FORMATS_SELFTEST"),
    reason="the whole fault catalogue per format takes minutes; set LORA_HARNESS_FORMATS_SELFTEST=1",
)
@pytest.mark.parametrize("name", ["tiny-bf16", "tiny-q4"])
def test_selftest_catches_every_observable_fault_in_format(formats, name):
    from lora_harness.runs.run import Settings
    from lora_harness.runs.selftest import run_selftest

    settings = Settings(model=None, lora=LoRAConfig(), pins={}, suite=None, check_names=suites.GATE)
    section = run_selftest(formats[name], settings, list(FAULTS))
    summary = section["summary"]
    assert summary["clean_not_passing"] == summary["escaped"] == summary["errored"] == [], summary
    assert summary["caught"] + len(summary["no_effect"]) == len(FAULTS)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("fixture:tiny-q4-g16", "group size 16 is not supported"),
        ("fixture:tiny-g32", "needs a quantisation"),
        ("fixture:tiny-q9", "unknown fixture"),
    ],
)
def test_unusable_formats_are_one_line_input_errors(cli, formats, spec, fragment):
    from tests.support.helpers import assert_one_line_error

    assert_one_line_error(cli("run", "--model", spec, "--check", "lora_layer_count"), fragment)
