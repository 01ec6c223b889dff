"""Tolerances derived from precision, format-variant names, and baselines that refuse bad runs."""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import pytest

from lora_harness.core import numerics
from lora_harness.core.errors import InputError
from lora_harness.models import variants
from lora_harness.runs import baselines
from lora_harness.runs.run import save_baseline


def _model(dtype=mx.float32, quantize=None):
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32))
    model.set_dtype(dtype)
    if quantize:
        nn.quantize(model, group_size=quantize[1], bits=quantize[0])
    return model


def test_precision_is_read_from_the_model():
    assert numerics.precision_of(_model()).dtype == "float32"
    bf16 = numerics.precision_of(_model(mx.bfloat16))
    assert (bf16.dtype, bf16.eps, bf16.quantized) == ("bfloat16", 2**-7, False)
    q4 = numerics.precision_of(_model(quantize=(4, 32)))
    assert (q4.bits, q4.group_size, q4.mode) == (4, 32, "affine")
    assert q4.quantization_step == 1 / 30
    assert "4-bit (group 32" in q4.label()


def test_allowed_difference_follows_precision_floor_and_rounding():
    fp32, bf16 = numerics.precision_of(_model()), numerics.precision_of(_model(mx.bfloat16))
    assert numerics.allowed_difference(bf16) > 1000 * numerics.allowed_difference(fp32)
    assert numerics.allowed_difference(fp32, floor=1e-3) > 1e-3
    assert numerics.allowed_difference(fp32, rounding=0.1) > 0.1
    assert numerics.allowed_difference(fp32, roundings=8) == 8 * numerics.allowed_difference(fp32)


def test_non_finite_is_never_within():
    assert not numerics.within(math.nan, math.inf)
    nan = mx.array([1.0, float("nan")])
    assert math.isnan(numerics.relative_distance(nan, mx.array([1.0, 2.0])))
    assert numerics.relative_distance(mx.array([1.0, 2.0]), mx.array([1.0, 2.0])) == 0.0
    assert numerics.tree_distance({"a": mx.ones(2)}, {"b": mx.ones(2)}) == math.inf
    assert numerics.reportable(math.nan) == "nan"


def test_noise_floor_of_a_deterministic_backend_is_small():
    model = nn.Sequential(nn.Embedding(16, 8), nn.Linear(8, 16))
    tokens = mx.array([[1, 2, 3], [4, 5, 6]])
    assert numerics.noise_floor(model, tokens) <= 8 * numerics.precision_of(model).unit_roundoff


@pytest.mark.parametrize(
    "name, expected",
    [
        ("tiny-bf16", dict(dtype="bfloat16")),
        ("tiny-q4", dict(quantize=True, q_bits=4, q_group_size=None, q_mode="affine")),
        ("tiny-q8-g32", dict(quantize=True, q_bits=8, q_group_size=32, q_mode="affine")),
        ("tiny-bf16-q4", dict(dtype="bfloat16", quantize=True, q_bits=4)),
        ("tiny-mxfp4", dict(quantize=True, q_bits=None, q_mode="mxfp4")),
    ],
)
def test_variant_names_map_to_mlx_lm_convert_arguments(name, expected):
    arguments = variants.parse(name).convert_arguments()
    assert {k: arguments.get(k) for k in expected} == expected


def test_bad_variant_names_are_input_errors():
    assert variants.parse("tiny") is None
    with pytest.raises(InputError, match="needs a quantisation"):
        variants.parse("tiny-g32")
    with pytest.raises(InputError, match="unknown fixture"):
        variants.variant_path("tiny-q9", None)


def test_baseline_file_never_holds_nan(tmp_path):
    path = tmp_path / "b.json"
    with pytest.raises(InputError, match="voice_score is not finite"):
        baselines.save(path, "k", {"voice_score": math.nan, "run_id": "r"})
    with pytest.raises(InputError, match="metrics.last_loss is not finite"):
        baselines.save(path, "k", {"voice_score": 0.5, "metrics": {"last_loss": math.inf}})
    assert not path.exists()


def test_save_baseline_refuses_a_failing_run(tmp_path):
    report = {
        "summary": {"verdict": "fail"},
        "checks": [{"name": "voice_score_baseline", "status": "fail"}],
        "generation": {"trained_voice_score": 0.1, "baseline_key": "k"},
    }
    with pytest.raises(InputError, match="verdict is fail .voice_score_baseline."):
        save_baseline(report, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


def test_cli_does_not_save_a_baseline_from_a_failing_run(cli, tmp_path):
    result = cli(
        "run",
        "-q",
        "--out",
        "o",
        "--inject-fault",
        "loss_sign_flipped",
        "--check",
        "loss_finite_and_decreasing",
        "--check",
        "voice_score_baseline",
        "--save-baseline",
        "b.json",
    )
    assert result.returncode == 1, result.stderr
    assert "baseline NOT saved" in result.stderr
    assert not (tmp_path / "b.json").exists()
    assert list((tmp_path / "o").glob("*/report.json"))


def test_logits_are_compared_at_real_tokens_only():
    """Padding past a row's length is never read by a user: differences there are no finding."""
    lengths = mx.array([[0, 3], [1, 5]])  # mlx-lm's (prompt offset, length) per row
    logits = mx.random.normal((2, 5, 7))
    noisy = logits.at[0, 3:].add(100.0)  # row 0 is padded after its 3 tokens
    assert numerics.relative_distance(noisy, logits) > 1
    real, real_noisy = (numerics.real_positions(x, lengths) for x in (logits, noisy))
    assert real.shape == (8, 7)
    assert numerics.relative_distance(real_noisy, real) == 0.0
    moved = logits.at[1, 4].add(1.0)  # the last real token of row 1 still counts
    assert numerics.relative_distance(numerics.real_positions(moved, lengths), real) > 0
