"""The loss the trainer reports at step 1 is mlx-lm's next-token cross-entropy of that batch.

Before the first update the LoRA model is the model whose probe logits were taken before
training (`ctx.model.init_logits`), and step 1 trains on that probe batch; so mlx-lm's own
`default_loss`, fed those logits, must give the loss the step reported. Bound (derived):
log-softmax is 1-Lipschitz in the max norm, so a logit difference d moves each token's
cross-entropy by at most 2 d, with d <= the logits' allowed relative difference x max
|logit| (ctx.model.tolerance()); plus float32 rounding of the mean over the scored tokens
and of each log-sum-exp over the vocabulary: (tokens + vocab) u32, relative.
"""

import mlx.core as mx

from lora_harness.core import numerics
from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class FirstLossIsCrossEntropy(Check):
    name = "first_loss_is_cross_entropy"
    summary = (
        "the loss reported at step 1 equals mlx-lm's default_loss (next-token cross-entropy "
        "over the batch's target positions) recomputed from the untrained model's logits"
    )
    symptom = (
        "The trainer optimises something other than the data's next-token cross-entropy: a "
        "negated loss, targets not shifted, padding or inputs scored, a sum divided by the "
        "wrong count. The first loss already disagrees, though the curve may look normal."
    )
    remedy = (
        "Use mlx_lm.tuner.trainer.default_loss (or its exact recipe): logits of batch[:, :-1], "
        "targets batch[:, 1:], mask offset <= step <= length, sum of cross-entropy divided by "
        "the mask's sum, returned as (loss, tokens) and minimised, never negated."
    )
    requires = ("weights",)
    catches = (
        "zero_loss_tokens",
        "loss_scores_padding",
        "loss_mask_on_inputs",
        "loss_sign_flipped",
    )

    def measure(self, ctx) -> Measurement:
        if ctx.trainer_kind != "sft":
            raise SkipCheck("a DPO step reports a preference loss, not cross-entropy")
        training, part = ctx.training, ctx.model
        tokens, lengths = part.probe_batch
        first = training.batches[0] if training.batches else None
        if (
            first is None
            or first.width != tokens.shape[1]
            or list(first.lengths) != [int(n) for n in lengths[:, 1].tolist()]
        ):
            raise SkipCheck("step 1 did not train on the probe batch whose logits were kept")
        from mlx_lm.tuner.trainer import default_loss

        logits = _padded(part.init_logits, lengths, tokens.shape)
        reference, scored = default_loss(
            lambda inputs: logits[:, : inputs.shape[1]], tokens, lengths
        )
        reported, reference = training.metrics[0]["loss"], reference.item()
        _, allowed_logits = part.tolerance()
        u32 = numerics.machine_epsilon(mx.float32) / 2  # unit roundoff of float32
        rounding = (int(scored.item()) + logits.shape[-1]) * u32
        scale = mx.max(mx.abs(part.init_logits)).item()
        allowed = 2 * allowed_logits * scale / max(abs(reference), 1e-12) + rounding
        difference = abs(reported - reference) / max(abs(reference), 1e-12)
        evidence = numerics.evidence(part.precision, 0.0, allowed, relative_difference=difference)
        evidence.update(reported=reported, reference=reference, tokens=int(scored.item()))
        return Measurement(observed=difference, expected=allowed, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if numerics.within(measurement.observed, measurement.expected):
            return "pass", (
                f"step 1 loss {ev['reported']:.5g} = cross-entropy {ev['reference']:.5g} of its "
                f"{ev['tokens']} target tokens (relative difference {measurement.observed:.1e}, "
                f"allowed {measurement.expected:.1e})"
            )
        return "fail", (
            f"step 1 reported loss {ev['reported']:.5g}, but mlx-lm's cross-entropy of the same "
            f"batch and model is {ev['reference']:.5g}: the trainer minimises another function"
        )


def _padded(real, lengths, shape):
    """(rows, width, vocab) logits: each row's real positions from `real`, zeros after."""
    rows, width = shape
    full = mx.zeros((rows, width, real.shape[-1]), dtype=real.dtype)
    start = 0
    for row, n in enumerate(int(n) for n in lengths[:, 1].tolist()):
        n = min(n, width)
        full[row, :n] = real[start : start + n]
        start += n
    return full
