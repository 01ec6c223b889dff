"""The trained model's voice score keeps (or beats) its baseline, within the scorer's own noise."""

import math

from lora_harness.core.checking import Check, Measurement, SkipCheck, register

# One-sided 99%: a correct run falls this far below its baseline by chance about 1 time in 100.
Z_ONE_SIDED_99 = 2.33


@register
class VoiceScoreBaseline(Check):
    name = "voice_score_baseline"
    summary = (
        "voice score of the trained model >= baseline - the scorer's measured spread (never 0.0)"
    )
    symptom = (
        "The output loses the target author's voice (the seed's voice score fell to 0.00): the "
        "adapter is not applied, the base was corrupted, or training pushed the wrong way."
    )
    remedy = (
        "Verify the LoRA adapters (run the gate suite: trainable counts, frozen_base_unchanged, "
        "adapters_changed), the training data's voice, and the loss sign; compare with a saved "
        "baseline (--baseline) from a known-good run."
    )
    requires = ("weights", "generation")
    before_training = ("generation.init_generations",)
    catches = (
        "zero_loss_tokens",
        "destructive_full_model_lr",
        "loss_sign_flipped",
    )

    def measure(self, ctx) -> Measurement:
        gen = ctx.generation
        if gen.needs_references and not gen.settings.references_path:
            # The built-in corpus is the fixture's voice, not the voice a user's adapter learned.
            raise SkipCheck("pass --voice-references to score the voice")
        init_score = gen.voice_score(gen.init_generations)
        trained_score = gen.voice_score(gen.generations)
        baseline, baseline_spread = init_score, gen.voice_spread(gen.init_generations)
        source = "untrained model in this run"
        saved = gen.saved_baseline()
        if "voice_score" in ctx.model.expectations.pinned:
            baseline, baseline_spread = ctx.model.expectations.pinned["voice_score"], 0.0
            source = "pinned (--expect)"
        elif saved is not None:
            baseline, baseline_spread = saved["voice_score"], saved.get("voice_score_spread", 0.0)
            source = f"baseline file ({saved.get('run_id', '?')})"
        trained_spread = gen.voice_spread(gen.generations)
        tolerance = gen.settings.tolerance
        if tolerance is None:  # the scorer's noise on both sides, not a constant
            tolerance = Z_ONE_SIDED_99 * math.hypot(baseline_spread, trained_spread)
        evidence = {
            "untrained_score": init_score,
            "trained_score": trained_score,
            "baseline": baseline,
            "baseline_source": source,
            "baseline_spread": round(baseline_spread, 6),
            "trained_spread": round(trained_spread, 6),
            "tolerance": round(tolerance, 6),
            "tolerance_source": "--voice-tolerance"
            if gen.settings.tolerance is not None
            else f"{Z_ONE_SIDED_99} x bootstrap spread of the scorer",
            "improvement_over_untrained": round(trained_score - init_score, 6),
            "samples": [g.text[:120] for g in gen.generations[:2]],
            "prompt_format": gen.prompt_format,
        }
        return Measurement(trained_score, round(baseline - tolerance, 6), evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        verdict, message = self._verdict(measurement)
        prompts = measurement.evidence.get("prompt_format", "plain")
        return verdict, f"{message}; {'chat-template' if prompts == 'chat' else 'plain'} prompts"

    def _verdict(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed <= 0.0:
            return "fail", "voice score 0.00: the generations share nothing with the target voice"
        if measurement.observed >= measurement.expected:
            return "pass", (
                f"voice score {measurement.observed:.4f} (untrained {ev['untrained_score']:.4f}, "
                f"baseline {ev['baseline']:.4f} from {ev['baseline_source']}, "
                f"allowed drop {ev['tolerance']:.4f})"
            )
        return "fail", (
            f"voice score {measurement.observed:.4f} fell below baseline {ev['baseline']:.4f} "
            f"- {ev['tolerance']:.4f} ({ev['baseline_source']}; allowed drop from "
            f"{ev['tolerance_source']})"
        )
