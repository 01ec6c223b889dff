"""The plan as a report (kind "plan") and as the lines `lora-harness plan` prints."""

from __future__ import annotations

import dataclasses

from lora_harness.models.sources import resolve
from lora_harness.plan import advice, machine, request
from lora_harness.plan.planner import Knobs, Planner
from lora_harness.plan.shape import Quantization
from lora_harness.runs.given import given
from lora_harness.runs.run import new_run_id, now, report_header, settings_from


def plan(values, calibrate_steps: int = 0) -> dict:
    """The plan section: settings, device, budget, prediction, verdict, advice, calibration."""
    values = given(values)
    spec, lora, run = request.from_values(values)
    source = resolve(spec)
    planner = Planner(source)
    quantize = None
    if values.q_bits:
        quantize = Quantization(values.q_bits, values.q_group_size or 64)
    knobs = Knobs(lora=lora, run=run, quantize=quantize)
    prediction, device = planner.predict(knobs)
    budget = machine.budget(values.memory_gb)
    verdict = machine.verdict(prediction.peak_bytes, budget["bytes"])
    section = {
        "model": planner.shape(knobs).describe(),
        "lora": {"rank": lora.rank, "num_layers": lora.num_layers, "keys": lora.keys},
        "training": run.describe(),
        "device": device.describe(),
        "budget": budget,
        "prediction": prediction.describe(),
        "verdict": verdict,
        "tight_from": machine.TIGHT_FROM,
    }
    if verdict == "does not fit":
        section["advice"] = advice.advise(planner, knobs, budget["bytes"])
    if calibrate_steps and quantize is not None:
        section["calibration"] = {"skipped": "--q-bits plans a base you do not have yet"}
    elif calibrate_steps:
        section["calibration"] = _calibrate(source, lora, run, prediction, verdict, calibrate_steps)
    return section


def _calibrate(source, lora, run, prediction, verdict: str, steps: int) -> dict:
    from lora_harness.plan import calibrate

    if verdict == "does not fit":
        return {"skipped": "predicted not to fit this machine: a real step would run out of memory"}
    if not source.has_weights:
        return {"skipped": f"{source.spec} is shape-only; use random:<name> to calibrate"}
    if run.ranks > 1:
        return {"skipped": "calibrate one rank under mlx.launch; this process is one rank"}
    model = calibrate.prepared(source, lora)
    shape = {
        "batch_size": run.batch_size,
        "seq_length": run.seq_length,
        "grad_checkpoint": run.grad_checkpoint,
    }
    measured = calibrate.measure(model, lora, source.config["vocab_size"], shape, steps)
    measured["predicted_over_measured"] = prediction.peak_bytes / measured["measured_peak_bytes"]
    return measured


def build(values, calibrate_steps: int = 0) -> dict:
    """A report of kind "plan": the shared header (as bench writes it) and the plan."""
    started = now()
    values = given(values)
    spec = request.model_spec(values)
    settings = settings_from(dataclasses.replace(values, model=spec))  # every rule, first
    section = plan(values, calibrate_steps)
    document = report_header(settings, resolve(spec), new_run_id(), "plan", started)
    document["plan"] = section
    return document


def _gb(value) -> str:
    return f"{value / 1e9:.2f} GB" if isinstance(value, int | float) else "?"


def lines(document: dict) -> list[str]:
    p = document["plan"]
    t, pred = p["training"], p["prediction"]
    out = [
        f"plan: {p['model']['spec']} r{p['lora']['rank']}, {p['model']['adapted_layers']} "
        f"adapted blocks, batch {t['rows_per_rank']} x {t['seq_length']} tokens"
        + (", grad checkpoint" if t["grad_checkpoint"] else "")
        + (f", per rank of {t['ranks']}" if t["ranks"] > 1 else ""),
        f"  predicted peak {_gb(pred['peak_bytes'])} ({pred['peak_phase']}); "
        f"budget {_gb(p['budget']['bytes'])} ({p['budget']['source']}): {p['verdict'].upper()}",
    ]
    for name, value in sorted(pred["terms"].items(), key=lambda kv: -kv[1]):
        if value:
            out.append(f"    {name:<28} {_gb(value)}")
    if cheapest := (p.get("advice") or {}).get("cheapest"):
        out.append(
            f"  cheapest change that fits: {cheapest['change']} -> "
            f"{_gb(cheapest['predicted_peak_bytes'])}"
        )
        for option in p["advice"]["options"][1:]:
            out.append(f"    or {option['change']} -> {_gb(option['predicted_peak_bytes'])}")
    elif "advice" in p:
        out.append("  no single change found that fits; consider a smaller model")
    if cal := p.get("calibration"):
        if "skipped" in cal:
            out.append(f"  calibrate skipped: {cal['skipped']}")
        else:
            out.append(
                f"  calibrated: {cal['tokens_per_second']:.0f} tokens/s, measured peak "
                f"{_gb(cal['measured_peak_bytes'])}, predicted / measured "
                f"{cal['predicted_over_measured']:.3f}"
            )
    return out
