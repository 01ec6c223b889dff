"""Every training example ends with a terminator as the compiled step receives it."""

from lora_harness.core.checking import Check, Measurement, register


@register
class TrainingExamplesTerminated(Check):
    name = "training_examples_terminated"
    summary = (
        "every training example still ends with an end-of-text / end-of-turn token after "
        "batching truncates it to --max-seq-length"
    )
    symptom = (
        "Generation never stops, or runs on into <|endoftext|> spam: the model was never shown "
        "where an example ends, because the data lacked the terminator (mlx-examples #756) or "
        "--max-seq-length cut it off before the step saw it."
    )
    remedy = (
        "Tokenise through mlx-lm's dataset classes (they append EOS to text rows; chat rows end "
        "with the template's end-of-turn token), or append tokenizer.eos_token_id yourself; "
        "raise --max-seq-length to the longest example (the message names it) or split long "
        "examples so truncation keeps their terminator."
    )
    requires = ("weights",)
    catches = ("data_without_terminator",)

    def measure(self, ctx) -> Measurement:
        dataset, max_length = ctx.model.training_dataset, ctx.lora.max_seq_length
        ends = _Ends(ctx.generation.stop_ids, ctx.model.tokenizer)
        received = _received_tails(ctx.training.batches)
        truncated, missing = {}, []
        for index in range(len(dataset)):
            tokens = _tokens(dataset[index])
            # What the step got; an example this run did not train on, as the batcher cuts it.
            if ends.terminated(received[index] if index in received else tokens[:max_length]):
                continue
            if len(tokens) > max_length and ends.terminated(tokens):
                truncated[index] = len(tokens)
            else:
                missing.append(index)
        evidence = {
            "examples": len(dataset),
            "consumed_examples": sorted(received),
            "max_seq_length": max_length,
            "missing_terminator": missing[:10],
            "missing_count": len(missing),
            "truncated_examples": sorted(truncated)[:10],
            "truncated_count": len(truncated),
            "truncated_consumed": len(set(truncated) & set(received)),
            "keeps_whole_at": max(truncated.values(), default=None),
            "terminators": sorted(ctx.model.tokenizer.convert_ids_to_tokens(sorted(ends.stops))),
        }
        return Measurement(observed=len(missing) + len(truncated), expected=0, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        total, consumed = ev["examples"], len(ev["consumed_examples"])
        if measurement.observed == 0:
            return "pass", (
                f"all {total} training examples end with a terminator as the step receives them "
                f"(--max-seq-length {ev['max_seq_length']}; {consumed} trained on in this run)"
            )
        problems = []
        if ev["truncated_count"]:
            problems.append(
                f"truncation to --max-seq-length {ev['max_seq_length']} cuts the terminator off "
                f"{ev['truncated_count']} of {total} training examples ({ev['truncated_consumed']} "
                f"of them in the batches this run trained on); --max-seq-length "
                f"{ev['keeps_whole_at']} keeps them whole"
            )
        if ev["missing_count"]:
            problems.append(
                f"{ev['missing_count']} of {total} training examples do not end with a terminator "
                f"(first: example {ev['missing_terminator'][0]})"
            )
        return "fail", "; ".join(problems)


class _Ends:
    def __init__(self, stops, tokenizer):
        self.stops, self.tokenizer = stops, tokenizer

    def terminated(self, tokens) -> bool:
        tokens = list(tokens)
        while tokens and tokens[-1] not in self.stops and not self._visible(tokens[-1]):
            tokens.pop()  # chat templates put a newline after <|im_end|>
        return bool(tokens) and tokens[-1] in self.stops

    def _visible(self, token: int) -> bool:
        return bool(self.tokenizer.decode([token]).strip())


def _tokens(item) -> list[int]:
    """An mlx-lm dataset item is (tokens, prompt offset), or bare tokens (as iterate_batches)."""
    return list(item[0] if len(item) == 2 else item)


def _received_tails(consumed) -> dict[int, tuple[int, ...]]:
    """Example index -> the last tokens of that example as the step was handed it."""
    tails: dict[int, tuple[int, ...]] = {}
    for batch in consumed:
        if batch.examples is None:
            continue
        for index, tail in zip(batch.examples, batch.tails, strict=True):
            tails.setdefault(index, tail)
    return tails
