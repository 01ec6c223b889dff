"""The trained model's voice score keeps (or beats) its baseline."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class VoiceScoreBaseline(Check):
    name = "voice_score_baseline"
    summary = "voice score of the trained model >= baseline - tolerance (and never 0.0)"
    symptom = (
        "The output loses the target author's voice (the seed's voice score fell to 0.00): the "
        "adapter is not applied, the base was corrupted, or training pushed the wrong way."
    )
    remedy = (
        "Verify the LoRA adapters (run the gate suite: trainable counts, frozen_base_unchanged, "
        "adapters_changed), the training data's voice, and the loss sign; compare with a saved "
        "baseline (--baseline) from a known-good run."
    )
    requires = ("weights",)
    before_training = ("generation.init_generations",)

    def measure(self, ctx) -> Measurement:
        if ctx.generation.needs_references and not ctx.generation.settings.references_path:
            # The built-in corpus is the fixture's voice, not the voice a user's adapter learned.
            raise SkipCheck("pass --voice-references to score the voice")
        init_score = ctx.generation.voice_score(ctx.generation.init_generations)
        trained_score = ctx.generation.voice_score(ctx.generation.generations)
        baseline, source = init_score, "untrained model in this run"
        saved = ctx.generation.saved_baseline()
        if "voice_score" in ctx.model.expectations.pinned:
            baseline, source = ctx.model.expectations.pinned["voice_score"], "pinned (--expect)"
        elif saved is not None:
            baseline, source = saved["voice_score"], f"baseline file ({saved.get('run_id', '?')})"
        tolerance = ctx.generation.settings.tolerance
        evidence = {
            "untrained_score": init_score,
            "trained_score": trained_score,
            "baseline": baseline,
            "baseline_source": source,
            "tolerance": tolerance,
            "improvement_over_untrained": round(trained_score - init_score, 6),
            "samples": [g.text[:120] for g in ctx.generation.generations[:2]],
        }
        return Measurement(trained_score, round(baseline - tolerance, 6), evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed <= 0.0:
            return "fail", "voice score 0.00: the generations share nothing with the target voice"
        if measurement.observed >= measurement.expected:
            return "pass", (
                f"voice score {measurement.observed:.4f} (untrained {ev['untrained_score']:.4f}, "
                f"baseline {ev['baseline']:.4f} from {ev['baseline_source']})"
            )
        return "fail", (
            f"voice score {measurement.observed:.4f} fell below baseline {ev['baseline']:.4f} "
            f"- {ev['tolerance']} ({ev['baseline_source']})"
        )
