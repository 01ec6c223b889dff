"""k accumulated micro-batches update like one batch of the same rows; no window is dropped."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, register

# Rounding: the two exact ways of the reference differ by the noise floor; an accumulation
# that sums in another order may differ by a few times that.
NOISE_MULTIPLE = 16


@register
class GradAccumulationMatchesBatch(Check):
    name = "grad_accumulation_matches_batch"
    summary = (
        "with k micro-batches per update the optimizer is handed the gradient of one batch of "
        "the same rows (the loss's own token mean), and a last shorter window is applied"
    )
    symptom = (
        "Gradient accumulation that averages per-micro-batch token means (mlx-lm 0.32.2; "
        "transformers before its 2024 fix, torchtune before PR #1875) over-weights short rows whenever "
        "micro-batches hold different token counts, and a run whose iters is not a multiple "
        "of k silently drops the last micro-batches."
    )
    remedy = (
        "Accumulate token *sums* (loss x loss tokens) and divide by the window's total loss "
        "tokens; apply the last partial window (lora-harness's --grad-accumulation-steps does)."
    )
    requires = ("weights",)
    shown_failing_in = "tests/test_trainer_checks.py::test_ga_fails_on_each_coded_fault"

    def measure(self, ctx) -> Measurement:
        from lora_harness.lora.accumulation import measure

        probe = getattr(ctx, "accumulation", None)
        if probe is None or probe.steps < 2:
            raise SkipCheck("grad_accumulation_steps is 1: nothing is accumulated")
        evidence = measure(ctx.model.lora_model, probe)
        evidence["allowed"] = max(NOISE_MULTIPLE * evidence["noise_floor"], 1e-6)
        observed = (
            f"deviation {evidence['deviation']:.3g}, "
            f"{evidence['updates_with_partial_window']} updates"
        )
        expected = (
            f"deviation <= {evidence['allowed']:.3g}, "
            f"{evidence['expected_updates_with_partial_window']} updates"
        )
        return Measurement(observed, expected, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        problems = []
        if ev["deviation"] > ev["allowed"]:
            problems.append(
                f"{ev['trainer']}'s accumulated gradient is {ev['deviation']:.2%} away from "
                f"one batch of the same rows (micro-batch loss tokens {ev['micro_batch_loss_tokens']})"
            )
        if ev["updates_with_partial_window"] != ev["expected_updates_with_partial_window"]:
            problems.append(
                f"{ev['micro_batches_run']} micro-batches at k={ev['k']} gave "
                f"{ev['updates_with_partial_window']} updates, not "
                f"{ev['expected_updates_with_partial_window']}: the last window was dropped"
            )
        if problems:
            return "fail", "; ".join(problems)
        return "pass", (
            f"{ev['trainer']}: k={ev['k']} deviation {ev['deviation']:.2g} (noise "
            f"{ev['noise_floor']:.2g}), partial window applied"
        )
