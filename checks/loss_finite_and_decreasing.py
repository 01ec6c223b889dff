"""The loss stays finite at every step and falls while overfitting one tiny batch."""

import math

from lora_harness.core.checking import Check, Measurement, register


@register
class LossFiniteAndDecreasing(Check):
    name = "loss_finite_and_decreasing"
    summary = "loss is finite every step and the last is below the first when overfitting one batch"
    symptom = (
        "NaN/inf loss (a huge rank or scale, a batch with zero loss tokens giving 0/0) or a loss "
        "that never falls: the adapter is not learning or not in the forward pass."
    )
    remedy = (
        "Lower --scale/--learning-rate, make sure every batch has loss tokens (check masks and "
        "sequence lengths), and confirm the adapters are trainable and in the graph."
    )
    requires = ("weights",)
    # On a single repeated batch even a few Adam steps should cut the loss noticeably.
    min_relative_drop = 0.02

    def measure(self, ctx) -> Measurement:
        losses = [step["loss"] for step in ctx.training.metrics]
        bad_steps = [i + 1 for i, loss in enumerate(losses) if not math.isfinite(loss)]
        ratio = losses[-1] / losses[0] if not bad_steps and losses[0] > 0 else None
        evidence = {
            "losses": losses,
            "non_finite_steps": bad_steps,
            "zero_token_steps": [
                s["iteration"] for s in ctx.training.metrics if s["loss_tokens"] == 0
            ],
            "min_relative_drop": self.min_relative_drop,
        }
        return Measurement(observed=ratio, expected=1 - self.min_relative_drop, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev["non_finite_steps"]:
            return "fail", f"loss is not finite at step(s) {ev['non_finite_steps'][:5]}"
        if measurement.observed is None:
            return (
                "fail",
                f"loss is not positive ({ev['losses'][0]:.4f}); cross-entropy cannot be negative",
            )
        if len(ev["losses"]) < 2:
            return "fail", "needs at least 2 steps to see the loss fall; raise --iters"
        if measurement.observed <= measurement.expected:
            return "pass", f"loss {ev['losses'][0]:.4f} -> {ev['losses'][-1]:.4f}"
        return "fail", (
            f"loss did not fall: {ev['losses'][0]:.4f} -> {ev['losses'][-1]:.4f} "
            f"(needs a drop of at least {self.min_relative_drop:.0%})"
        )
