"""A run stopped at step s and resumed from its checkpoint continues like the uninterrupted one."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class ResumeContinuesRun(Check):
    name = "resume_continues_run"
    summary = (
        "stopped at step s and resumed from its checkpoint, the trainer ends where the "
        "uninterrupted run of 2s steps ends: adapters, optimizer moments, step, learning rate"
    )
    symptom = (
        "A resume that reloads only the adapters (mlx_lm.lora --resume-adapter-file) restarts "
        "Adam with zero moments at step 0 and the schedule's warmup again; one that restores "
        "the optimizer but re-initialises the adapters (huggingface/diffusers #12689) throws "
        "the training away. The loss jumps after the resume and the run is not reproducible."
    )
    remedy = (
        "Checkpoint the optimizer state (tree_flatten(optimizer.state), including 'step') "
        "with the adapters and restore both: lora_harness.lora.checkpoint.save_checkpoint / "
        "resume_checkpoint."
    )
    requires = ("weights",)
    shown_failing_in = "tests/test_trainer_checks.py::test_resume_fails_on_each_coded_fault"

    def measure(self, ctx) -> Measurement:
        from lora_harness.lora.resume_probe import measure

        probe = getattr(ctx, "resume", None)
        if probe is None:
            raise SkipCheck("no resume probe: pass --check-resume to the guard")
        evidence = measure(ctx.model.lora_model, probe)
        evidence["trainer"] = probe.trainer_name
        observed = "; ".join(evidence["lost"]) or "nothing lost"
        return Measurement(observed, "nothing lost", evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev["lost"]:
            return "fail", (
                f"{ev['trainer']}: resumed at step {ev['stopped_at']}, the run lost: "
                + "; ".join(ev["lost"])
            )
        return "pass", (
            f"{ev['trainer']}: resumed at step {ev['stopped_at']}: adapters within "
            f"{ev['adapter_distance']:.2g} (noise {ev['noise_floor']:.2g}), step and lr as uninterrupted"
        )
