"""Mid-run: the reported losses, the adapters in memory and a probe gradient are all finite."""

import math

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from lora_harness.core.checking import Check, Measurement, register


def probe_gradient(model, batch, loss=None):
    """The gradient of mlx-lm's loss on `batch` w.r.t. the trainable arrays (no update)."""
    from mlx_lm.tuner.trainer import default_loss

    # In eval mode: dropout would draw from the run's random stream and change its course.
    was_training = model.training
    model.eval()
    try:
        _, grads = nn.value_and_grad(model, loss or default_loss)(model, *batch)
    finally:
        model.train(was_training)
    return dict(tree_flatten(grads))


@register
class TrainingValuesFinite(Check):
    name = "training_values_finite"
    summary = (
        "losses so far, the adapters in memory and the gradients (through the optimizer's "
        "moments, else a probe) hold no NaN/Inf"
    )
    symptom = (
        "A long run goes NaN at step k (a learning-rate spike, a zero-token batch, fp16 "
        "overflow) and keeps training for hours; every checkpoint after k is garbage."
    )
    remedy = (
        "Resume from the last finite checkpoint with a lower learning rate or scale; drop "
        "batches without loss tokens; train in bf16/fp32 rather than fp16."
    )
    requires = ("weights",)
    shown_failing_in = (
        "tests/test_guard.py::test_guard_stops_a_resume_from_a_nan_checkpoint_at_the_first_check"
    )

    def measure(self, ctx) -> Measurement:
        losses = [(s["iteration"], s["loss"]) for s in ctx.training.metrics]
        bad_losses = [i for i, loss in losses if not math.isfinite(loss)]
        adapters = dict(tree_flatten(ctx.model.lora_model.trainable_parameters()))
        bad_adapters = _not_finite(adapters)
        # Adam's moments average every gradient since the start: one NaN stays in them, so
        # finite moments mean no step's gradient was NaN/Inf, at no cost. Stateless
        # optimizers (plain SGD) get a probe gradient on the last batch instead.
        moments = _moments(ctx.training.optimizer)
        probed = not moments and getattr(ctx, "batch", None) is not None
        if moments:
            bad_grads = _not_finite(moments)
        elif probed:
            bad_grads = _not_finite(probe_gradient(ctx.model.lora_model, ctx.batch))
        else:
            bad_grads = []
        evidence = {
            "non_finite_loss_iterations": bad_losses[:5],
            "non_finite_adapters": bad_adapters[:5],
            "non_finite_gradients": bad_grads[:5],
            "losses_seen": len(losses),
            "adapters": len(adapters),
            "gradient_probed": probed,
            "gradients_via": "optimizer moments" if moments else "probe" if probed else None,
        }
        observed = len(bad_losses) + len(bad_adapters) + len(bad_grads)
        return Measurement(observed, 0, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed == 0:
            via = ev["gradients_via"]
            probe = f", gradients (via {via})" if via else ""
            return "pass", (
                f"{ev['losses_seen']} losses, {ev['adapters']} adapter arrays{probe}: all finite"
            )
        parts = [
            f"{label} {ev[key][0]}"
            for key, label in (
                ("non_finite_loss_iterations", "loss at iteration"),
                ("non_finite_adapters", "adapter"),
                ("non_finite_gradients", f"gradient ({ev['gradients_via']}) of"),
            )
            if ev[key]
        ]
        return "fail", "NaN/Inf: " + "; ".join(parts)


def _moments(optimizer) -> dict:
    """The optimizer's per-parameter state arrays (m, v, ...), flattened; {} if it has none."""
    import mlx.optimizers as optim

    if optimizer is None or (isinstance(optimizer, optim.SGD) and optimizer.momentum <= 0):
        return {}  # plain SGD keeps a zero buffer that no gradient ever reaches
    return {
        n: a
        for n, a in tree_flatten(optimizer.state)
        if n != "step" and n != "learning_rate" and "." in n and isinstance(a, mx.array)
    }


def _not_finite(arrays: dict) -> list[str]:
    flags = [mx.all(mx.isfinite(a)) for a in arrays.values()]
    mx.eval(flags)
    return sorted(name for name, ok in zip(arrays, flags, strict=True) if not ok.item())
