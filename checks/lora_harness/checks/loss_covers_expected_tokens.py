"""Each step's loss scores exactly the positions the data says it should, no more, no fewer."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, register
from lora_harness.lora.loss_coverage import RowSpan, expected_tokens, reference_scores_first_pad
from lora_harness.text.prompt_offsets import prompt_offset


@register
class LossCoversExpectedTokens(Check):
    name = "loss_covers_expected_tokens"
    summary = (
        "the loss tokens each step reports equal those derived from the batch's example lengths "
        "(and, under --mask-prompt, each prompt's length from the data and the tokenizer)"
    )
    symptom = (
        "Training looks normal but the model learns the wrong thing: padding is scored (it "
        "learns to emit the pad id, often <|endoftext|>), the mask is off by a position, the "
        "prompt is trained on despite --mask-prompt, or the loss is averaged over the wrong count."
    )
    remedy = (
        "Build the loss mask from the batch lengths on the *target* positions (mlx-lm's "
        "default_loss: steps = arange(1, L); offset <= step <= length) and divide by that mask's "
        "sum; tokenise with mask_prompt so each example carries its prompt offset."
    )
    requires = ("weights",)
    catches = (
        "zero_loss_tokens",
        "loss_scores_padding",
        "loss_mask_on_inputs",
        "dpo_loss_scores_prompt",
    )

    def measure(self, ctx) -> Measurement:
        training = ctx.training
        if not training.batches:
            raise SkipCheck("this trainer keeps no record of the batches its step consumed")
        # The DPO loss sums log-probs of response tokens only; mlx-lm's SFT loss may go one past.
        first_pad = ctx.trainer_kind != "dpo" and reference_scores_first_pad()
        steps = []
        for metrics, batch in zip(training.metrics, training.batches, strict=True):
            rows = _expected_rows(ctx, batch)
            steps.append(
                {
                    "step": metrics["iteration"],
                    "reported": metrics["loss_tokens"],
                    "expected": expected_tokens(rows, batch.width, first_pad),
                    "rows": batch.rows,
                    "width": batch.width,
                    "batch_lengths": list(batch.lengths),
                    "data_lengths": [row.length for row in rows],
                }
            )
        wrong = [s for s in steps if s["reported"] != s["expected"]]
        evidence = {
            "steps": len(steps),
            "wrong_steps": wrong[:5],
            "first_step": steps[0],
            "mask_prompt": ctx.lora.mask_prompt,
            "scores_first_pad": first_pad,
        }
        return Measurement(observed=len(wrong), expected=0, evidence=evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed == 0:
            first = ev["first_step"]
            return "pass", (
                f"every step scored the {first['expected']} loss tokens its batch's lengths give "
                f"({first['rows']} rows, {first['width']} wide, {ev['steps']} steps)"
            )
        bad = ev["wrong_steps"][0]
        extra = bad["reported"] - bad["expected"]
        why = (
            "padding, prompt or shifted positions are scored"
            if extra > 0
            else "real tokens are left out of the loss"
        )
        return "fail", (
            f"{measurement.observed} of {ev['steps']} steps report the wrong loss tokens: step "
            f"{bad['step']} scored {bad['reported']}, its batch's lengths give {bad['expected']} "
            f"({abs(extra)} {'too many' if extra > 0 else 'too few'}: {why})"
        )


def _expected_rows(ctx, batch) -> list[RowSpan]:
    """Each row's loss span from the data: the example's own length, and under --mask-prompt
    its prompt offset derived from the row and the tokenizer, never from the recipe's
    `tokenize` (a tokenize step with the wrong offset would agree with itself)."""
    if batch.examples is None:  # DPO: the spans are the pairs' own prompt/response bounds
        return [RowSpan(o, n) for o, n in zip(batch.offsets, batch.lengths, strict=True)]
    model, lora = ctx.model, ctx.lora
    rows = []
    for index in batch.examples:
        item = model.training_dataset[index]
        tokens = item[0] if len(item) == 2 else item
        start = _prompt_offset(model, index) if lora.mask_prompt else 0
        rows.append(RowSpan(start, min(len(tokens), lora.max_seq_length)))
    return rows


def _prompt_offset(model, index: int) -> int:
    return prompt_offset(model.training_rows[index], model.tokenizer)
