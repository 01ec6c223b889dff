"""The model fused through mlx-lm's fuse path computes what base + adapter computes.

Criteria (all relative logit distances, max |a - b| / max |b|, see harness/core/numerics.py):

- every logit is finite (a NaN distance is never a pass);
- the adapter moves the logits beyond the model's own noise: d(base, adapter) > 4 floor + 8 u,
  floor being the base's logits computed batched and row by row;
- the fused model is within the rounding that fusing into its format implies:
  d(fused, adapter) <= 4 (floor + rounding) + 8 u, where floor = d(merged, adapter) for the
  adapter merged without re-quantising (mlx-lm's fuse with dequantize=True), rounding =
  d(merged quantised like the fused model, merged) (0 for float formats) and u the unit
  roundoff of the fused model's dtype;
- the fused model is much closer to base + adapter than the base is:
  d(fused, adapter) <= 0.5 d(base, adapter). When re-quantising alone moves the logits by
  that much, no fuse into that quantisation can keep the adapter: a warning, with the
  remedy to fuse with --dequantize.
"""

import math

import mlx.core as mx

from lora_harness.core import numerics
from lora_harness.core.checking import Check, Measurement, register
from lora_harness.lora.adapters import rejected_message, rejection_guard


@register
class FuseEquivalence(Check):
    name = "fuse_equivalence"
    summary = "fused model = base + adapter within its format's rounding, and much closer than base"
    symptom = (
        "The fused model behaves like the base model or like neither (re-quantisation swamping "
        "the LoRA delta, a fuse that drops lora_b, wrong scale): mlx-lm #1172, PR #1564."
    )
    remedy = (
        "Fuse with mlx_lm.fuse (or module.fuse() for every LoRA module); for quantised bases try "
        "--dequantize and compare again."
    )
    requires = ("weights",)

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        adapter, fused, base = (
            ctx.adapter.loaded_logits,
            ctx.adapter.fused_logits,
            ctx.model.base_logits,
        )
        exact, rounded = ctx.adapter.fuse_references
        precision = ctx.adapter.fused_precision
        floor = numerics.relative_distance(exact, adapter)
        rounding = numerics.relative_distance(rounded, exact) if rounded is not None else 0.0
        floor = floor if math.isfinite(floor) else 0.0
        rounding = rounding if math.isfinite(rounding) else 0.0
        allowed = numerics.allowed_difference(precision, floor, rounding)
        distance = numerics.relative_distance(fused, adapter)
        effect = numerics.relative_distance(base, adapter)
        evidence = numerics.evidence(
            precision,
            floor,
            allowed,
            fused_vs_adapter=distance,
            base_vs_adapter=effect,
            ratio=distance / effect if effect and math.isfinite(distance) else math.nan,
            requantisation_rounding=rounding,
        )
        evidence["greedy_token_agreement"] = mx.mean(
            mx.argmax(fused, axis=-1) == mx.argmax(adapter, axis=-1)
        ).item()
        evidence["fused_identical_to_base"] = bool(mx.array_equal(fused, base).item())
        # The adapter's effect is measured by the model itself, against its own noise.
        evidence["effect_allowed"] = ctx.model.tolerance()[1]
        return Measurement(distance, allowed, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        ev, distance, allowed = measurement.evidence, measurement.observed, measurement.expected
        effect = ev["base_vs_adapter"]
        if not isinstance(effect, float) or not numerics.within(distance, math.inf):
            return "fail", (
                "logits of the adapter or the fused model are not finite (NaN/inf): the adapter "
                "holds non-finite values, so no fuse of it is base + adapter"
            )
        if ev["fused_identical_to_base"]:
            return "fail", "the fused model is identical to the base model: the LoRA delta was lost"
        if effect <= ev["effect_allowed"]:
            return "fail", (
                f"the adapter does not change the logits beyond noise (relative {effect:.3g}, "
                f"noise allowed {ev['effect_allowed']:.3g}): there is nothing for the fuse to keep"
            )
        if distance > allowed:
            return "fail", (
                f"fused differs from base + adapter: relative logit distance {distance:.3g} > "
                f"allowed {allowed:.3g} for {ev['precision']['label']} (floor {ev['noise_floor']:.3g}, "
                f"re-quantisation {ev['requantisation_rounding']:.3g})"
            )
        return self._judge_ratio(ev, distance, effect)

    def _judge_ratio(self, ev: dict, distance: float, effect: float) -> tuple[str, str]:
        ratio = distance / effect
        if ratio > numerics.FUSE_MAX_RATIO:
            rounding_alone = ev["requantisation_rounding"] / effect
            where = (
                f"fused is only {1 - ratio:.0%} of the way from base to base + adapter "
                f"(distance {distance:.3g} vs base {effect:.3g})"
            )
            if rounding_alone > numerics.FUSE_MAX_RATIO:
                return "warn", (
                    f"{where}: re-quantising to {ev['precision']['label']} alone swamps the "
                    "adapter; fuse with --dequantize to keep it"
                )
            return "fail", where
        return "pass", (
            f"fused = base + adapter (relative distance {distance:.2g} <= allowed "
            f"{ev['allowed']:.2g}, {ratio:.2g} of the adapter's effect {effect:.2g})"
        )
