"""The loss stays finite at every step and, overfitting one batch, settles below where it began."""

import math
import statistics

from lora_harness.core.checking import Check, Measurement, register


def settled_window(iters: int) -> int:
    """Steps whose median stands for where the loss settled: the later half of the run.

    Adam on one repeated batch falls fast but not monotonically: a single late spike
    (0.19 at step 7, 0.55 at step 8) is normal, so no single step may decide.
    """
    return max(1, iters // 2)


@register
class LossFiniteAndDecreasing(Check):
    name = "loss_finite_and_decreasing"
    summary = "loss is finite every step and the median of the later half is below the first step"
    symptom = (
        "NaN/inf loss (a huge rank or scale, a batch with zero loss tokens giving 0/0) or a loss "
        "that never falls: the adapter is not learning, not in the forward pass, or diverging."
    )
    remedy = (
        "Lower --scale/--learning-rate, make sure every batch has loss tokens (check masks and "
        "sequence lengths), and confirm the adapters are trainable and in the graph."
    )
    requires = ("weights",)
    # On a single repeated batch even a few Adam steps should cut the loss noticeably.
    min_relative_drop = 0.02
    catches = (
        "zero_loss_tokens",
        "huge_scale",
        "destructive_full_model_lr",
        "loss_sign_flipped",
    )

    def measure(self, ctx) -> Measurement:
        metrics = ctx.training.metrics
        losses = [step["loss"] for step in metrics]
        bad_steps = [i + 1 for i, loss in enumerate(losses) if not math.isfinite(loss)]
        window = settled_window(len(losses))
        settled = statistics.median(losses[-window:]) if losses and not bad_steps else None
        ratio = settled / losses[0] if settled is not None and losses[0] > 0 else None
        evidence = {
            "losses": losses,
            "first": losses[0] if losses else None,
            "settled_median": settled,
            "settled_window": window,
            "best": min(losses) if losses and not bad_steps else None,
            "non_finite_steps": bad_steps,
            "zero_token_steps": [s["iteration"] for s in metrics if s["loss_tokens"] == 0],
            "min_relative_drop": self.min_relative_drop,
        }
        evidence["settled_over_first"] = ratio
        observed = None if ratio is None else f"settled at {ratio:.0%} of the first step's loss"
        expected = f"at most {1 - self.min_relative_drop:.0%} of the first step's loss"
        return Measurement(observed, expected, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev["non_finite_steps"]:
            return "fail", f"loss is not finite at step(s) {ev['non_finite_steps'][:5]}"
        if len(ev["losses"]) < 2:
            return "fail", "needs at least 2 steps to see the loss fall; raise --iters"
        ratio = ev["settled_over_first"]
        if ratio is None:
            return (
                "fail",
                f"loss is not positive ({ev['first']:.4f}); cross-entropy cannot be negative",
            )
        settled = (
            f"median of the last {ev['settled_window']} steps {ev['settled_median']:.4f} "
            f"vs first step {ev['first']:.4f} ({ratio:.0%} of it)"
        )
        if ratio <= 1 - self.min_relative_drop:
            return "pass", f"loss fell: {settled}"
        return "fail", (
            f"loss did not fall: {settled}; needs a drop of at least {self.min_relative_drop:.0%}"
        )
