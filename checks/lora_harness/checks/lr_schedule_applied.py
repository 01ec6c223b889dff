"""The learning rate the optimizer applied, and its step, are the configured schedule's."""

from dataclasses import dataclass

from lora_harness.core.checking import Check, Measurement, SkipCheck, register

RELATIVE = 1e-6  # the same float32 schedule evaluated twice; any real slip is far larger


@dataclass
class ScheduleProbe:
    """The configured lr (a number or mlx_lm's build_schedule(lr_schedule)) and k."""

    configured: object
    grad_accumulation_steps: int = 1
    described: str = ""

    def at(self, step: int) -> float:
        value = self.configured(step) if callable(self.configured) else self.configured
        return float(value.item() if hasattr(value, "item") else value)


@register
class LrScheduleApplied(Check):
    name = "lr_schedule_applied"
    summary = (
        "the optimizer has taken iteration // k updates and its last one used the configured "
        "lr_schedule at that update (warmup, cosine_decay, ...)"
    )
    symptom = (
        "A schedule that is configured but never applied (the optimizer got the constant "
        "learning_rate), stepped per micro-batch instead of per update, restarted by a "
        "resume, or off by one: the run trains at the wrong rate with nothing in the loss "
        "curve to say why."
    )
    remedy = (
        "Build the optimizer with learning_rate=build_schedule(config['lr_schedule']); step "
        "it once per optimizer update (not per micro-batch); restore optimizer.state "
        "(its 'step') when resuming."
    )
    requires = ("weights",)
    shown_failing_in = (
        "tests/test_trainer_checks.py::test_schedule_fails_when_the_configured_schedule_is_ignored"
    )

    def measure(self, ctx) -> Measurement:
        probe, optimizer = getattr(ctx, "schedule", None), ctx.training.optimizer
        if probe is None or optimizer is None:
            raise SkipCheck("no configured schedule or optimizer to hold it to")
        updates = int(optimizer.state["step"].item())
        if updates == 0:
            raise SkipCheck("the optimizer has not stepped yet")
        applied = float(optimizer.state["learning_rate"].item())
        expected_updates = ctx.iteration // probe.grad_accumulation_steps
        configured = probe.at(updates - 1)  # schedules read the step before it is counted
        evidence = {
            "iteration": ctx.iteration,
            "updates": updates,
            "expected_updates": expected_updates,
            "applied_lr": applied,
            "configured_lr_at_update": configured,
            "configured_lr_at_expected": probe.at(max(expected_updates - 1, 0)),
            "schedule": probe.described,
        }
        return Measurement(
            f"{updates} updates, lr {applied:.6g}",
            f"{expected_updates} updates, lr {evidence['configured_lr_at_expected']:.6g}",
            evidence,
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        problems = []
        if ev["updates"] != ev["expected_updates"]:
            problems.append(
                f"{ev['updates']} optimizer updates after {ev['iteration']} iterations, "
                f"expected {ev['expected_updates']}"
            )
        want = ev["configured_lr_at_update"]
        if abs(ev["applied_lr"] - want) > RELATIVE * max(abs(want), 1e-30):
            problems.append(
                f"the last update used lr {ev['applied_lr']:.6g}, the schedule gives {want:.6g}"
            )
        if problems:
            return "fail", "; ".join(problems)
        return "pass", f"update {ev['updates']}: lr {ev['applied_lr']:.6g} as scheduled"
