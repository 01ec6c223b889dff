"""When a run does not fit: the cheapest change that does, found by predicting again.

Changes are tried in order of what they cost the training, least first:
1. --grad-checkpoint: the same gradients, about a third more compute;
2. a smaller batch with more gradient-accumulation steps: the same effective batch;
3. fewer adapted layers (--num-layers): fewer blocks keep activations for the backward;
4. a lower rank: a smaller adapter (rarely enough on its own: adapters are small);
5. a shorter --max-seq-length: longer examples are truncated;
6. a quantised base (8, then 4 bits): the base's numerics change (QLoRA).
Within each knob the least change that fits is taken (the largest batch, layers, rank or
length). If no single change fits, --grad-checkpoint is combined with each of the others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lora_harness.plan.planner import Knobs, Planner
from lora_harness.plan.shape import Quantization

QUANTIZED_BASES = (Quantization(8, 64), Quantization(4, 64))
SEQ_STEP = 128  # whole attention tiles: a fused backward on CUDA needs T % 128 == 0


def _fits(planner: Planner, knobs: Knobs, budget: int) -> int | None:
    peak = planner.predict(knobs)[0].peak_bytes
    return peak if peak <= budget else None


def _largest(values: list, make: Callable, planner: Planner, budget: int):
    """The first of `values` (largest first) whose knobs fit: a bisection, since each knob's
    memory falls as its value falls."""
    low, high = 0, len(values)  # the answer's index lies in [low, high]; high = none fits
    while low < high:
        middle = (low + high) // 2
        if _fits(planner, make(values[middle]), budget) is not None:
            high = middle
        else:
            low = middle + 1
    if high == len(values):
        return None, None
    return values[high], make(values[high])


def _halvings(value: int) -> list[int]:
    out, v = [], value // 2
    while v >= 1:
        out.append(v)
        v //= 2
    return out


@dataclass(frozen=True)
class Knob:
    """One knob of the advice: its values (least change first) and what each one means."""

    name: str
    values: list
    make: Callable  # value -> the knobs with this value
    words: Callable  # value -> the change in words


def candidates(planner: Planner, knobs: Knobs) -> list[Knob]:
    """The knobs that can still be turned, in the order of what they cost the training."""
    run, lora = knobs.run, knobs.lora
    layers = planner.shape(knobs).adapted_layers
    out = []
    if not run.grad_checkpoint:
        make = lambda v: knobs.replace(grad_checkpoint=True)  # noqa: E731
        out.append(Knob("grad_checkpoint", [True], make, lambda v: "add --grad-checkpoint"))
    if run.batch_size > 1:
        out.append(_batch_knob(knobs))
    if layers > 1:
        words = lambda n: f"--num-layers {n} (adapt the last {n} of {layers} blocks)"  # noqa: E731
        make = lambda n: knobs.replace(num_layers=n)  # noqa: E731
        out.append(Knob("num_layers", list(range(layers - 1, 0, -1)), make, words))
    if lora.rank > 1:
        make = lambda r: knobs.replace(rank=r)  # noqa: E731
        out.append(Knob("rank", _halvings(lora.rank), make, lambda r: f"--rank {r}"))
    lengths = list(range((run.seq_length - 1) // SEQ_STEP * SEQ_STEP, 0, -SEQ_STEP))
    if lengths:
        words = lambda t: f"--max-seq-length {t} (longer examples are truncated)"  # noqa: E731
        out.append(Knob("seq_length", lengths, lambda t: knobs.replace(seq_length=t), words))
    if planner.shape(knobs).quantization is None and _quantizable(planner, knobs):
        words = lambda q: (  # noqa: E731
            f"a {q.bits}-bit base (mlx_lm.convert -q --q-bits {q.bits} "
            f"--q-group-size {q.group_size})"
        )
        make = lambda q: knobs.replace(quantize=q)  # noqa: E731
        out.append(Knob("quantized_base", list(QUANTIZED_BASES), make, words))
    return out


def _divisors(n: int) -> set[int]:
    """By pairs up to sqrt(n): a --batch-size of 10^11 took forever counting down from it."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return {*small, *(n // d for d in small)}


def _quantizable(planner: Planner, knobs: Knobs) -> bool:
    """Whether mlx can quantise this model at all (a dimension not divisible by the group
    size cannot be): a change the user could not make is no advice."""
    from lora_harness.core.errors import InputError

    try:
        planner.shape(knobs.replace(quantize=QUANTIZED_BASES[-1]))
    except InputError:
        return False
    return True


def _batch_knob(knobs: Knobs) -> Knob:
    """Smaller batches (divisors of the batch) with accumulation keeping the effective batch."""
    batch, accumulate = knobs.run.batch_size, knobs.run.grad_accumulation_steps
    values = sorted(_divisors(batch) - {batch}, reverse=True)

    def make(b):
        return knobs.replace(batch_size=b, grad_accumulation_steps=accumulate * batch // b)

    def words(b):
        steps = accumulate * batch // b
        return f"--batch-size {b} with --grad-accumulation-steps {steps} (the same effective batch)"

    return Knob("batch_size", values, make, words)


def advise(planner: Planner, knobs: Knobs, budget: int) -> dict:
    """{'cheapest': {...} or None, 'options': [...]}: every single change that fits, in order."""
    options = []
    for knob in candidates(planner, knobs):
        value, fitting = _largest(knob.values, knob.make, planner, budget)
        if fitting is not None:
            options.append(_option(planner, knob.name, value, knob.words, fitting))
    if not options and not knobs.run.grad_checkpoint:
        checkpointed = knobs.replace(grad_checkpoint=True)
        for knob in candidates(planner, checkpointed):
            value, fitting = _largest(knob.values, knob.make, planner, budget)
            if fitting is not None:
                option = _option(planner, knob.name, value, knob.words, fitting)
                option["change"] = "add --grad-checkpoint and " + option["change"]
                options.append(option)
    return {"cheapest": options[0] if options else None, "options": options}


def flags(knobs: Knobs) -> list[str]:
    """The `lora-harness plan` flags that describe `knobs` (to re-plan or to run with)."""
    run, lora = knobs.run, knobs.lora
    out = ["--batch-size", str(run.batch_size), "--max-seq-length", str(run.seq_length)]
    out += ["--grad-accumulation-steps", str(run.grad_accumulation_steps)]
    out += ["--num-layers", str(lora.num_layers), "--rank", str(lora.rank)]
    out += ["--grad-checkpoint"] if run.grad_checkpoint else []
    if knobs.quantize is not None:
        out += [
            "--q-bits",
            str(knobs.quantize.bits),
            "--q-group-size",
            str(knobs.quantize.group_size),
        ]
    return out


def _option(planner: Planner, name: str, value, words: Callable, knobs: Knobs) -> dict:
    peak = planner.predict(knobs)[0].peak_bytes
    shown = value.describe() if isinstance(value, Quantization) else value
    return {
        "knob": name,
        "value": shown,
        "change": words(value),
        "predicted_peak_bytes": peak,
        "plan_flags": flags(knobs),
    }
