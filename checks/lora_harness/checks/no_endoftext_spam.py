"""The trained model writes text that stops by itself, without special tokens or loops."""

from lora_harness.core.checking import Check, Measurement, register
from lora_harness.text.generation import repeated_ngram_share

_FORMATS = {"chat": "prompted through the chat template", "plain": "plain-text prompts"}


@register
class NoEndoftextSpam(Check):
    name = "no_endoftext_spam"
    summary = "generations hold no special-token literals, are not empty and do not loop"
    symptom = (
        "Output is <|endoftext|> spam, empty, or the same phrase over and over: the visible "
        "sign of corrupted training (base weights moved) or of a wrong stop set."
    )
    remedy = (
        "Run the gate suite to find the broken step (frozen_base_unchanged, trainable counts); "
        "stop generation at tokenizer EOS, generation_config eos ids and <|im_end|>; make sure "
        "training examples end with the terminator."
    )
    requires = ("weights", "generation")
    max_bad_share = 0.25  # empty or looping generations tolerated before failing
    loop_threshold = 0.5  # repeated 4-gram share that counts as a loop
    min_stop_share = 0.5  # below this, warn: most outputs ran to the length limit
    catches = (
        "zero_loss_tokens",
        "destructive_full_model_lr",
        "loss_sign_flipped",
    )

    def measure(self, ctx) -> Measurement:
        generations = ctx.generation.generations
        literals = ctx.generation.special_token_literals
        leaked = [(i, lit) for i, g in enumerate(generations) for lit in literals if lit in g.text]
        empty = [i for i, g in enumerate(generations) if not g.text.strip()]
        looping = [
            i
            for i, g in enumerate(generations)
            if repeated_ngram_share(g.tokens) > self.loop_threshold
        ]
        bad = set(empty) | set(looping)
        evidence = {
            "generations": len(generations),
            "special_literals_found": [f"#{i}: {lit}" for i, lit in leaked[:5]],
            "empty": empty[:10],
            "looping": looping[:10],
            "stop_share": sum(g.stopped for g in generations) / max(len(generations), 1),
            "samples": [g.text[:120] for g in generations[:3]],
            "prompt_format": ctx.generation.prompt_format,
        }
        return Measurement(len(bad) / max(len(generations), 1), self.max_bad_share, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        verdict, message = self._verdict(measurement)
        return (
            verdict,
            f"{message} ({_FORMATS.get(measurement.evidence.get('prompt_format'), 'plain')})",
        )

    def _verdict(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev["special_literals_found"]:
            return (
                "fail",
                f"special tokens in the output: {', '.join(ev['special_literals_found'][:3])}",
            )
        if measurement.observed > measurement.expected:
            return "fail", (
                f"{measurement.observed:.0%} of generations are empty ({len(ev['empty'])}) or "
                f"looping ({len(ev['looping'])}); at most {measurement.expected:.0%} allowed"
            )
        if ev["stop_share"] < self.min_stop_share:
            return "warn", f"only {ev['stop_share']:.0%} of generations stopped by themselves"
        return "pass", (
            f"{ev['generations']} generations clean; {ev['stop_share']:.0%} stopped by themselves"
        )
