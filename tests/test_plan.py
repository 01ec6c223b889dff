"""`lora-harness plan`: a peak-memory prediction made before any weight is loaded, and advice.

No test depends on this machine's memory: every verdict is judged against --memory-gb.
"""

from __future__ import annotations

import json

import pytest
from mlx.utils import tree_flatten

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.plan import report, shape
from lora_harness.plan.advice import flags
from lora_harness.plan.memory import TrainingShape
from lora_harness.plan.planner import Knobs, Planner

BIG = {"model": "shape:qwen2.5-7b", "batch_size": 4, "max_seq_length": 1024}


def plan(**values) -> dict:
    return report.plan(values)


def test_does_not_fit_advice_turns_the_config_into_one_that_fits(cli):
    args = ["plan", "--model", "shape:qwen2.5-7b", "--batch-size", "4", "--max-seq-length", "1024"]
    failing = cli(*args, "--memory-gb", "40", "--json", "-", "--out", "o")
    assert failing.returncode == 1, failing.stderr
    before = failing.json()["plan"]
    assert before["verdict"] == "does not fit"
    cheapest = before["advice"]["cheapest"]
    assert cheapest["predicted_peak_bytes"] <= 40e9 < before["prediction"]["peak_bytes"]
    fixed = cli(
        "plan", "--model", "shape:qwen2.5-7b", *cheapest["plan_flags"],
        "--memory-gb", "40", "--json", "-", "--out", "o",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    after = fixed.json()["plan"]
    assert after["verdict"] in ("fits", "tight")
    assert after["prediction"]["peak_bytes"] == cheapest["predicted_peak_bytes"]


def test_every_option_of_the_advice_fits_when_planned_again():
    before = plan(**BIG, memory_gb=40)
    assert before["verdict"] == "does not fit" and len(before["advice"]["options"]) >= 2
    for option in before["advice"]["options"]:
        values = dict(BIG, memory_gb=40, **_values(option["plan_flags"]))
        again = plan(**values)
        assert again["verdict"] in ("fits", "tight"), option
        assert again["prediction"]["peak_bytes"] == option["predicted_peak_bytes"]


def test_a_budget_nothing_fits_gets_no_advice_rather_than_a_wrong_one():
    hopeless = plan(**BIG, memory_gb=1)  # the 4-bit weights alone are 4 GB
    assert hopeless["verdict"] == "does not fit" and hopeless["advice"]["cheapest"] is None


def test_verdict_follows_the_budget():
    peak = plan(**BIG, memory_gb=1000)["prediction"]["peak_bytes"]
    assert plan(**BIG, memory_gb=peak * 1.01 / 1e9)["verdict"] == "tight"
    assert plan(**BIG, memory_gb=peak / 0.80 / 1e9)["verdict"] == "fits"
    assert plan(**BIG, memory_gb=peak * 0.99 / 1e9)["verdict"] == "does not fit"


def test_weights_and_adapters_are_counted_as_loaded(fixture_source):
    """Weights from the safetensors headers; adapters as the trainer makes them."""
    from lora_harness.lora import trainer

    model, _ = fixture_source.load()
    trainer.prepare_lora_model(model, LoRAConfig())
    loaded = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    trainable = sum(v.size for _, v in tree_flatten(model.trainable_parameters()))
    planned = shape.read(fixture_source, LoRAConfig())
    assert planned.lora_parameters == trainable
    assert planned.weights_total + 4 * trainable == loaded


def test_quantised_base_is_planned_in_its_format(fixture_cache):
    from lora_harness.models.sources import resolve

    float_base = shape.read(resolve("fixture:tiny"), LoRAConfig())
    q4 = shape.read(resolve("fixture:tiny-q4"), LoRAConfig())
    what_if = shape.read(resolve("fixture:tiny"), LoRAConfig(), quantize=shape.Quantization(4, 64))
    assert q4.quantization.bits == 4 and set(q4.weight_bytes) >= {"quantized", "scales_and_biases"}
    assert q4.weights_total < float_base.weights_total / 3
    assert what_if.weight_bytes["quantized"] == q4.weight_bytes["quantized"]


def test_grad_checkpoint_from_the_yaml_keeps_only_block_inputs(tmp_path):
    config = tmp_path / "lora.yaml"
    config.write_text("batch_size: 2\nmax_seq_length: 512\ngrad_checkpoint: true\n")
    checkpointed = plan(model="shape:qwen2.5-0.5b", config=str(config), memory_gb=100)
    plain = plan(model="shape:qwen2.5-0.5b", batch_size=2, max_seq_length=512, memory_gb=100)
    assert checkpointed["training"]["grad_checkpoint"] and not plain["training"]["grad_checkpoint"]
    terms = checkpointed["prediction"]["terms"]
    assert "checkpoints" in terms and "saved_activations" not in terms
    assert checkpointed["prediction"]["peak_bytes"] < plain["prediction"]["peak_bytes"]


def test_data_parallel_ranks_hold_their_share_of_the_batch():
    one = plan(**BIG, memory_gb=1000)
    two = plan(**BIG, memory_gb=1000, ranks=2)
    assert two["training"]["rows_per_rank"] == 2
    assert two["prediction"]["terms"]["data_parallel_buffers"] > 0
    assert two["prediction"]["peak_bytes"] < one["prediction"]["peak_bytes"]


def test_bad_plan_input_is_one_line_and_exit_2(cli):
    uneven = cli("plan", "--model", "shape:qwen2.5-0.5b", "--batch-size", "3", "--ranks", "2")
    assert uneven.returncode == 2 and "divisible" in uneven.stderr
    assert "Traceback" not in uneven.stderr and len(uneven.stderr.strip().splitlines()) == 1


def test_calibrate_measures_the_planned_shape(cli, fixture_cache):
    done = cli(
        "plan", "--model", "fixture:tiny", "--batch-size", "2", "--max-seq-length", "64",
        "--calibrate", "--memory-gb", "8", "--json", "-", "--out", "o",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calibration = done.json()["plan"]["calibration"]
    assert calibration["measured_peak_bytes"] > calibration["resident_before_bytes"] > 0
    assert calibration["tokens_per_second"] > 0 and calibration["predicted_over_measured"] > 0


def _values(plan_flags: list[str]) -> dict:
    """The option values `plan_flags` stand for (dest -> value)."""
    values, i = {}, 0
    while i < len(plan_flags):
        dest = plan_flags[i].removeprefix("--").replace("-", "_")
        if dest == "grad_checkpoint":
            values[dest], i = True, i + 1
        else:
            values[dest], i = int(plan_flags[i + 1]), i + 2
    return values


def test_flags_describe_the_knobs():
    knobs = Knobs(lora=LoRAConfig(rank=4, num_layers=3), run=TrainingShape(2, 64))
    assert _values(flags(knobs)) == {
        "batch_size": 2, "max_seq_length": 64, "grad_accumulation_steps": 1,
        "num_layers": 3, "rank": 4,
    }  # fmt: skip
    assert Planner  # the planner is what advice re-runs
    assert json.dumps(knobs.run.describe())


@pytest.mark.parametrize("spec", ["shape:qwen2.5-7b", "shape:llama-3.1-8b"])
def test_terms_add_up_to_the_peak(spec):
    predicted = plan(model=spec, batch_size=1, max_seq_length=256, memory_gb=1000)["prediction"]
    terms = predicted["terms"]
    assert terms["weights"] > 0 and terms["logits"] > 0
    assert predicted["peak_bytes"] <= sum(terms.values())
