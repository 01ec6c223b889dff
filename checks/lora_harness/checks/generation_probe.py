"""At a checkpoint, the model still generates text: finite logits, not an immediate stop."""

import mlx.core as mx

from lora_harness.core.checking import Check, Measurement, register

PROBE_TOKENS = 16


@register
class GenerationProbe(Check):
    name = "generation_probe"
    summary = (
        "at each checkpoint a greedy continuation of a training prompt has finite logits and "
        "does not end at once"
    )
    symptom = (
        "Mid-run collapse: the model emits <|endoftext|> (or nothing) from the first token "
        "on, or its logits went NaN, while the loss curve still looks plausible."
    )
    remedy = (
        "Stop and inspect the last good checkpoint; lower the learning rate; check that the "
        "training rows end with the EOS token once, not padded with it."
    )
    requires = ("weights", "generation")
    shown_failing_in = (
        "tests/test_guard_loop.py::test_generation_probe_fails_on_nan_logits_and_passes_clean"
    )

    def measure(self, ctx) -> Measurement:
        tokenizer, model = ctx.tokenizer, ctx.model.lora_model
        prompt = _prompt(ctx)
        stops = set(tokenizer.eos_token_ids)
        tokens, finite = list(prompt), True
        was_training = model.training
        model.eval()
        for _ in range(PROBE_TOKENS):
            logits = model(mx.array(tokens)[None])[0, -1]
            finite = finite and bool(mx.all(mx.isfinite(logits)).item())
            nxt = int(mx.argmax(logits).item())
            tokens.append(nxt)
            if nxt in stops:
                break
        model.train(was_training)
        produced = tokens[len(prompt) :]
        content = [t for t in produced if t not in stops]
        evidence = {
            "prompt_tokens": len(prompt),
            "generated": tokenizer.decode(produced)[:200],
            "finite": finite,
        }
        return Measurement(len(content), "> 0 tokens before a stop, finite logits", evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if not ev["finite"]:
            return "fail", "the logits hold NaN/Inf"
        if measurement.observed == 0:
            return "fail", f"stopped at once: {ev['generated']!r}"
        return "pass", f"{measurement.observed} tokens: {ev['generated'][:60]!r}"


def _prompt(ctx) -> list[int]:
    """The first half of the last training row, at most 32 tokens (the run's own text)."""
    batch = getattr(ctx, "batch", None)
    if batch is not None:
        tokens, lengths = batch
        length = int(lengths[0, 1].item())
        return tokens[0, : max(1, min(32, length // 2))].tolist()
    return ctx.tokenizer.encode("The")
