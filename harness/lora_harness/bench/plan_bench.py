"""`bench --only plan_accuracy`: the plan's predicted peak / the peak of real steps.

For each training shape of the grid, the plan predicts first (from the config, before
the weights are loaded), then a few compiled steps run at exactly that shape and
`mx.get_peak_memory()` is read. Goal: every ratio in [0.85, 1.15]. A miss is given the
term of the prediction nearest the gap in size: a lead to the term that is wrong, not a
proof.
"""

from __future__ import annotations

import gc

import mlx.core as mx

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import ModelSource
from lora_harness.plan import calibrate
from lora_harness.plan.memory import TrainingShape
from lora_harness.plan.planner import Knobs, Planner

GOAL = (0.85, 1.15)
STEPS = 2  # the peak of a step: the first (compiling) and one more, whose time is tokens/s
# (batch, sequence, grad checkpoint): the GPU grid of the issue; a CPU one it can finish.
GPU_GRID = [(b, t, c) for b in (1, 4) for t in (512, 2048) for c in (False, True)]
CPU_GRID = [(1, 128, False), (2, 256, False), (2, 256, True)]


def grid() -> list[tuple[int, int, bool]]:
    return GPU_GRID if mx.default_device() == mx.gpu else CPU_GRID


def nearest_term(terms: dict, gap: int) -> str:
    """The predicted term (weights aside: they are read exactly) nearest |gap| in size."""
    candidates = {k: v for k, v in terms.items() if v and k != "weights"}
    if not candidates:
        return "weights"
    return min(candidates, key=lambda k: abs(candidates[k] - abs(gap)))


def _row(planner, knobs, model, lora, vocab) -> dict:
    prediction, device = planner.predict(knobs)
    run = knobs.run
    row = {**run.describe(), "predicted_peak_bytes": prediction.peak_bytes}
    row["peak_phase"] = prediction.dominant_phase
    row["predicted_terms"] = dict(prediction.terms)
    row["attention_backward"] = device.describe()["attention_backward"]
    shape = {"batch_size": run.batch_size, "seq_length": run.seq_length}
    shape["grad_checkpoint"] = run.grad_checkpoint
    try:
        measured = calibrate.measure(model, lora, vocab, shape, steps=STEPS)
    except RuntimeError as error:  # out of memory on the device: the plan's verdict, recorded
        gc.collect()
        mx.clear_cache()
        row["error"] = str(error).splitlines()[0][:200]
        return row
    row.update(measured)
    row["ratio"] = prediction.peak_bytes / measured["measured_peak_bytes"]
    if not GOAL[0] <= row["ratio"] <= GOAL[1]:
        gap = prediction.peak_bytes - measured["measured_peak_bytes"]
        row["miss"] = {
            "over" if gap > 0 else "under": abs(gap),
            "nearest_term": nearest_term(prediction.terms, gap),
        }
    return row


def measure(source: ModelSource, lora: LoRAConfig, shapes=None) -> dict:
    """Predicted / measured peak over `shapes` (default: this device's grid)."""
    planner = Planner(source)
    shapes = shapes or grid()
    knobs = [Knobs(lora=lora, run=TrainingShape(b, t, c)) for b, t, c in shapes]
    for k in knobs:
        planner.predict(k)  # every prediction made before any weight exists
    model = calibrate.prepared(source, lora)
    vocab = source.config["vocab_size"]
    rows = [_row(planner, k, model, lora, vocab) for k in knobs]
    ratios = [r["ratio"] for r in rows if "ratio" in r]
    worst = max(ratios, key=lambda r: abs(r - 1.0)) if ratios else None
    return {
        "ratio": worst,
        "meaning": "the ratio furthest from 1 of predicted / measured peak over the grid",
        "within_goal": sum(GOAL[0] <= r <= GOAL[1] for r in ratios),
        "measured": len(ratios),
        "goal": f"every ratio in [{GOAL[0]}, {GOAL[1]}]",
        "meets_goal": bool(ratios) and all(GOAL[0] <= r <= GOAL[1] for r in ratios),
        "rows": rows,
        "device": str(mx.default_device()),
        "settings": {"grid": [list(s) for s in shapes], "steps": STEPS, **lora.to_dict()},
    }
