"""Every tokenised training example ends with the terminator the model must learn to emit."""

from lora_harness.core.checking import Check, Measurement, register


@register
class TrainingExamplesTerminated(Check):
    name = "training_examples_terminated"
    summary = "every tokenised training example ends with an end-of-text / end-of-turn token"
    symptom = (
        "Generation never stops, or runs on into <|endoftext|> spam: the model was never shown "
        "where an example ends because the data lacked the terminator (mlx-examples #756)."
    )
    remedy = (
        "Tokenise through mlx-lm's dataset classes (they append EOS to text rows; chat rows end "
        "with the template's end-of-turn token), or append tokenizer.eos_token_id yourself."
    )
    requires = ("weights",)

    def measure(self, ctx) -> Measurement:
        dataset, stops = ctx.model.training_dataset, ctx.generation.stop_ids
        tokenizer = ctx.model.tokenizer
        unterminated = []
        for index in range(len(dataset)):
            tokens = list(dataset[index][0])
            while tokens and tokens[-1] not in stops and not tokenizer.decode([tokens[-1]]).strip():
                tokens.pop()  # chat templates put a newline after <|im_end|>
            if not tokens or tokens[-1] not in stops:
                unterminated.append(index)
        evidence = {
            "examples": len(dataset),
            "unterminated_examples": unterminated[:10],
            "terminators": sorted(tokenizer.convert_ids_to_tokens(sorted(stops))),
        }
        return Measurement(observed=len(unterminated), expected=0, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        total = measurement.evidence["examples"]
        if measurement.observed == 0:
            return "pass", f"all {total} training examples end with a terminator"
        first = measurement.evidence["unterminated_examples"][0]
        return "fail", (
            f"{measurement.observed} of {total} training examples do not end with a terminator "
            f"(first: example {first})"
        )
