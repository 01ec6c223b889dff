"""The model fused through mlx-lm's fuse path computes what base + adapter computes.

Criteria (relative logit distances d(a, b) = max |a - b| / max |b|; bounds from
harness/core/numerics.py, allowed(floor, rounding) = 4 (floor + rounding) + 8 u):

1. every logit is finite (a NaN distance is never a pass);
2. the adapter moves the logits beyond the model's own noise: d(base, adapter) > allowed(floor),
   floor = the base's logits computed batched and row by row;
3. the fused model is within the rounding that fusing into its format implies:
   d(fused, adapter) <= allowed(merge floor, rounding), merge floor = d(merged, adapter) for
   base + adapter merged without re-quantising (mlx-lm's fuse with dequantize=True), rounding
   = d(merged and quantised like the fused model, merged), 0 for float formats;
4. the fused model is the best its format can hold: d(fused, reference) <= allowed(floor),
   reference = the merge rounded to the fused model's format (quantised if it is);
5. the fused model is much closer to base + adapter than the base is:
   d(fused, adapter) <= 0.5 d(base, adapter): the check judges the deliverable. Where rounding
   to the format alone keeps less than half of the adapter (a 4-bit base at a small learning
   rate, 2-bit, mxfp4) it fails all the same, naming the format's rounding as the cause and
   --fuse-dequantize as the remedy; the evidence (fuse_did_all_format_allows, format_keeps)
   still says whether the fuse did all its format allows.
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
        "--dequantize (here --fuse-dequantize) and compare again."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "lora_a_frozen",
        "zero_loss_tokens",
        "huge_scale",
        "destructive_full_model_lr",
        "fuse_drops_delta",
        "adapter_saved_not_applied",
        "adapter_config_without_scale",
    )

    @rejection_guard
    def measure(self, ctx) -> Measurement:
        adapter, fused, base = (
            ctx.adapter.loaded_logits,
            ctx.adapter.fused_logits,
            ctx.model.base_logits,
        )
        exact, rounded = ctx.adapter.fuse_references
        reference = exact if rounded is None else rounded
        precision = ctx.adapter.fused_precision
        floor = _finite_or_zero(numerics.relative_distance(exact, adapter))
        rounding = _finite_or_zero(numerics.relative_distance(reference, exact))
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
            fused_vs_reference=numerics.relative_distance(fused, reference),
            reference_ratio=rounding / effect if effect and math.isfinite(effect) else math.nan,
        )
        evidence["greedy_token_agreement"] = mx.mean(
            mx.argmax(fused, axis=-1) == mx.argmax(adapter, axis=-1)
        ).item()
        evidence["fused_identical_to_base"] = bool(mx.array_equal(fused, base).item())
        # The model's own noise: what the adapter's effect and the reference are judged against.
        evidence["model_noise_allowed"] = noise = ctx.model.tolerance()[1]
        # Apart from the verdict (which judges the deliverable): did the fuse do all its
        # format allows, and how much of the adapter's effect does that format keep at best?
        evidence["fuse_did_all_format_allows"] = numerics.within(
            evidence["fused_vs_reference"], noise
        )
        evidence["format_keeps"] = _kept(evidence["reference_ratio"])
        evidence["fused_keeps"] = _kept(evidence["ratio"])
        return Measurement(distance, allowed, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if rejected := rejected_message(measurement):
            return "fail", rejected
        ev, distance, allowed = measurement.evidence, measurement.observed, measurement.expected
        effect, noise = ev["base_vs_adapter"], ev["model_noise_allowed"]
        if not isinstance(effect, float) or not numerics.within(distance, math.inf):
            return "fail", (
                "logits of the adapter or the fused model are not finite (NaN/inf): the adapter "
                "holds non-finite values, so no fuse of it is base + adapter"
            )
        if ev["fused_identical_to_base"]:
            return "fail", "the fused model is identical to the base model: the LoRA delta was lost"
        if effect <= noise:
            return "fail", (
                f"the adapter does not change the logits beyond noise (relative {effect:.3g}, "
                f"noise allowed {noise:.3g}): there is nothing for the fuse to keep"
            )
        label = ev["precision"]["label"]
        if distance > allowed:
            return "fail", (
                f"fused differs from base + adapter: relative logit distance {distance:.3g} > "
                f"allowed {allowed:.3g} for {label} (floor {ev['noise_floor']:.3g}, "
                f"re-quantisation {ev['requantisation_rounding']:.3g})"
            )
        if not numerics.within(ev["fused_vs_reference"], noise):
            return "fail", (
                f"fused differs from base + adapter rounded to {label}: relative distance "
                f"{ev['fused_vs_reference']:.3g} > noise allowed {noise:.3g}"
            )
        return self._judge_ratio(ev, distance, effect)

    def _judge_ratio(self, ev: dict, distance: float, effect: float) -> tuple[str, str]:
        ratio = distance / effect
        if ratio <= numerics.FUSE_MAX_RATIO:
            return "pass", (
                f"fused = base + adapter (relative distance {distance:.2g} <= allowed "
                f"{ev['allowed']:.2g}, {ratio:.2g} of the adapter's effect {effect:.2g})"
            )
        kept = f"{max(1 - ratio, 0):.0%}"
        if not numerics.within(ev["reference_ratio"], numerics.FUSE_MAX_RATIO):
            # The fuse did all its format allows; the deliverable still lost the adapter.
            return "fail", (
                f"the fused model keeps only {kept} of the adapter's effect: rounding the merged "
                f"weights to {ev['precision']['label']} swamps the LoRA delta (the fuse itself "
                "did all that format allows); fuse with --fuse-dequantize (mlx_lm.fuse "
                "--dequantize) to keep it"
            )
        return "fail", (
            f"fused is only {kept} of the way from base to base + adapter "
            f"(distance {distance:.3g} vs base {effect:.3g})"
        )


def _kept(ratio) -> float | str:
    """The share of the adapter's effect a distance ratio leaves (1 = all of it)."""
    return max(1.0 - ratio, 0.0) if isinstance(ratio, float) and math.isfinite(ratio) else "nan"


def _finite_or_zero(value: float) -> float:
    return value if math.isfinite(value) else 0.0
