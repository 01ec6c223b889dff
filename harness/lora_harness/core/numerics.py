"""Numeric tolerances from the precision a model really has, never from a fixed constant.

Every check that compares logits or weights asks this module how far apart two results
may be. The answer is built from three things, each measured or derived on the run:

- the dtype the model computes in: its unit roundoff u = eps / 2 (fp32 6e-8, fp16 5e-4,
  bf16 4e-3). A handful of such roundings (ROUNDING_MARGIN) is what one extra rounding
  of weights or activations can move a logit by, relative to the largest logit;
- the quantisation (bits, group size): re-quantising a weight moves it by up to half a
  step of its group, 1 / (2 (2^bits - 1)) of the group's range; the logit effect of that
  is measured on the run by quantising the exact result (`rounding`);
- the noise floor: the same quantity computed two equivalent ways on this backend (for
  example base + adapter as LoRA layers and as merged weights). GPU reductions, TF32
  matmuls and bf16 accumulation all show up here; FLOOR_MARGIN times it is still noise.

allowed = FLOOR_MARGIN * (floor + rounding) + ROUNDING_MARGIN * u * roundings

(`roundings` is 1 except where a result is rounded again at every optimizer step.)

Logits are compared at real tokens only (`real_positions`): a batch's rows are padded to
its longest row, and the logits past a row's length belong to padding no user ever reads.
There a bf16 model's values are large and noisy (a SmolLM2-135M fuse judged over them
looked 23% of the way to base + adapter; over its real tokens it is within rounding).
The noise floor is measured on the same positions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import mlx.core as mx

# Noise measured once varies from run to run by a small factor; 4x it is still noise.
FLOOR_MARGIN = 4.0
# One rounding per weight moves a logit by a few u through a few blocks; 8 u is the budget.
ROUNDING_MARGIN = 8.0
# "Much closer": the fused model must remove at least half of what separates base and adapter.
FUSE_MAX_RATIO = 0.5


@dataclass(frozen=True)
class Precision:
    """The precision a model computes in: its floating dtype and, if any, its quantisation."""

    dtype: str
    eps: float
    bits: int | None = None
    group_size: int | None = None
    mode: str | None = None

    @property
    def quantized(self) -> bool:
        return self.bits is not None

    @property
    def unit_roundoff(self) -> float:
        return self.eps / 2

    @property
    def quantization_step(self) -> float:
        """Largest re-quantisation error of one weight, relative to its group's range."""
        return 1 / (2 * (2**self.bits - 1)) if self.quantized else 0.0

    def label(self) -> str:
        if not self.quantized:
            return self.dtype
        return f"{self.bits}-bit (group {self.group_size}, {self.mode}) over {self.dtype}"

    def to_dict(self) -> dict:
        return {**asdict(self), "unit_roundoff": self.unit_roundoff, "label": self.label()}


def machine_epsilon(dtype) -> float:
    return float(mx.finfo(dtype).eps)


def precision_of_arrays(arrays) -> Precision:
    """The floating dtype holding most of the values in `arrays` (float32 if none)."""
    sizes: dict = {}
    for array in arrays:
        if mx.issubdtype(array.dtype, mx.floating):
            sizes[array.dtype] = sizes.get(array.dtype, 0) + array.size
    dtype = max(sizes, key=sizes.get) if sizes else mx.float32
    return Precision(str(dtype).rsplit(".", 1)[-1], machine_epsilon(dtype))


def precision_of(model) -> Precision:
    """The floating dtype holding most of `model`'s values, and its quantisation if any."""
    from dataclasses import replace

    from mlx.utils import tree_flatten

    floating = precision_of_arrays(a for _, a in tree_flatten(model.parameters()))
    for _, module in model.named_modules():
        if hasattr(module, "bits") and hasattr(module, "group_size"):
            mode = getattr(module, "mode", "affine")
            return replace(floating, bits=module.bits, group_size=module.group_size, mode=mode)
    return floating


def tree_distance(observed: dict, reference: dict) -> float:
    """Relative distance of two name -> array trees: max |difference| / max |reference|.

    inf when the names or shapes differ, NaN when any value is not finite."""
    if set(observed) != set(reference):
        return math.inf
    if any(observed[n].shape != reference[n].shape for n in reference):
        return math.inf
    if not all(finite(observed[n]) and finite(reference[n]) for n in reference):
        return math.nan
    as32 = {n: (observed[n].astype(mx.float32), reference[n].astype(mx.float32)) for n in reference}
    difference = max((mx.max(mx.abs(a - b)).item() for a, b in as32.values()), default=0.0)
    scale = max((mx.max(mx.abs(b)).item() for _, b in as32.values()), default=0.0)
    return difference / max(scale, 1e-30)


def relative_distance(observed, reference) -> float:
    """max |observed - reference| / max |reference| in float32; NaN when either is non-finite."""
    observed, reference = observed.astype(mx.float32), reference.astype(mx.float32)
    if not (finite(observed) and finite(reference)):
        return math.nan
    difference = mx.max(mx.abs(observed - reference)).item()
    return difference / max(mx.max(mx.abs(reference)).item(), 1e-30)


def finite(array) -> bool:
    return bool(mx.all(mx.isfinite(array.astype(mx.float32))).item())


def allowed_difference(
    precision: Precision, floor: float = 0.0, rounding: float = 0.0, roundings: int = 1
) -> float:
    """The largest relative difference that is still rounding and noise for `precision`.

    `roundings`: how many times the result was rounded in sequence (e.g. optimizer steps)."""
    budget = ROUNDING_MARGIN * precision.unit_roundoff * max(roundings, 1)
    return FLOOR_MARGIN * (floor + rounding) + budget


def within(distance: float, allowed: float) -> bool:
    """NaN is never within anything: a non-finite result is a finding, not a pass."""
    return isinstance(distance, (int, float)) and math.isfinite(distance) and distance <= allowed


def real_positions(logits, lengths=None):
    """The (tokens, vocab) logits at each row's real tokens: row i up to its length.

    `lengths`: one length per row, or mlx-lm's (rows, 2) of (prompt offset, length); None
    keeps every position."""
    if lengths is None:
        return logits
    import numpy as np

    lengths = np.asarray(lengths).reshape(logits.shape[0], -1)[:, -1]
    rows = [row for row, n in enumerate(lengths) for _ in range(min(int(n), logits.shape[1]))]
    columns = [column for n in lengths for column in range(min(int(n), logits.shape[1]))]
    return logits[mx.array(rows), mx.array(columns)]


def noise_floor(model, tokens, lengths=None) -> float:
    """Relative difference of the batch's logits computed at once and row by row.

    The same function two equivalent ways: on a backend whose reductions depend on the
    batch shape (GPU kernels, TF32, bf16 accumulation) this is its rounding noise. Measured
    at the real tokens (`lengths`) the checks compare.
    """
    was_training = model.training
    model.eval()
    whole = real_positions(model(tokens), lengths)
    rows = [model(tokens[i : i + 1]) for i in range(tokens.shape[0])]
    rows = real_positions(mx.concatenate(rows), lengths)
    mx.eval(whole, rows)
    if was_training:
        model.train()
    distance = relative_distance(rows, whole)
    return distance if math.isfinite(distance) else 0.0


def evidence(precision: Precision, floor: float, allowed: float, **distances) -> dict:
    """What a numeric check keeps in the report: the distances, the floor and the bound."""
    rounded = {name: reportable(value) for name, value in distances.items()}
    return {
        **rounded,
        "noise_floor": float(f"{floor:.4g}"),
        "allowed": float(f"{allowed:.4g}"),
        "precision": precision.to_dict(),
    }


def reportable(value):
    """JSON has no NaN: a non-finite distance is kept as its name ("nan", "inf")."""
    if value is None:
        return None
    return float(f"{value:.4g}") if math.isfinite(value) else str(value)
