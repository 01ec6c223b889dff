"""The format and prompt offset the trainer trained on are the ones inference will use.

The inference prompt comes from harness/text/prompt_offsets.py, the same derivation that
loss_covers_expected_tokens holds a recipe's own offsets to.
"""

from dataclasses import dataclass

from lora_harness.core.checking import Check, Measurement, SkipCheck, register
from lora_harness.text.prompt_offsets import inference_prompt, prompt_messages

SAMPLE = 8


@dataclass
class ChatFormatProbe:
    """The trainer's tokenisation (`process(row) -> (tokens, offset)`) and how inference prompts."""

    process: object
    rows: list
    tokenizer: object
    inference: str  # "chat": apply_chat_template(..., add_generation_prompt=True); "text": raw
    mask_prompt: bool = False


def default_inference(tokenizer) -> str:
    """What mlx_lm.generate does: the chat template when the tokenizer has one."""
    return "chat" if getattr(tokenizer, "chat_template", None) else "text"


def row_problem(row: dict, tokens: list[int], offset: int, probe: ChatFormatProbe) -> str | None:
    if prompt_messages(row) is None:
        if probe.inference == "chat":
            return "trained on plain text, but inference prompts in the chat template"
        return None
    if probe.inference == "text":
        return "trained in the chat template, but inference prompts with plain text"
    prompt = inference_prompt(row, probe.tokenizer)
    if list(tokens[: len(prompt)]) != prompt:
        at = (
            next(i for i, (a, b) in enumerate(zip(tokens, prompt, strict=False)) if a != b)
            if any(a != b for a, b in zip(tokens, prompt, strict=False))
            else min(len(tokens), len(prompt))
        )
        return (
            f"trained tokens differ from the inference prompt at token {at}: "
            f"{probe.tokenizer.decode(list(tokens[at : at + 6]))!r} vs "
            f"{probe.tokenizer.decode(prompt[at : at + 6])!r}"
        )
    if probe.mask_prompt and offset != len(prompt):
        return (
            f"loss starts at token {offset}, but the inference prompt (with the generation "
            f"prompt) ends at {len(prompt)}: "
            f"{probe.tokenizer.decode(list(tokens[min(offset, len(prompt)) : max(offset, len(prompt))]))!r} "
            f"is {'trained on' if offset < len(prompt) else 'never trained'}"
        )
    return None


@register
class ChatFormatParity(Check):
    name = "chat_format_parity"
    summary = (
        "each training row is tokenised in the format inference uses and its loss starts where "
        "apply_chat_template(prompt, add_generation_prompt=True) ends"
    )
    symptom = (
        "A model trained on plain text and prompted through the chat template (or the reverse) "
        "loses its trained voice (0.79 -> 0.52 on the fixture); an assistant offset computed "
        "without the generation prompt trains the model to emit '<|im_start|>assistant' itself."
    )
    remedy = (
        "Train on the format you prompt with (messages or prompt/completion rows for chat "
        "inference; text rows for raw prompts, or mlx_lm.generate --ignore-chat-template), and "
        "compute the prompt offset with add_generation_prompt=True."
    )
    requires = ("weights",)
    shown_failing_in = (
        "tests/test_trainer_checks.py::"
        "test_chat_format_fails_on_an_offset_without_the_generation_prompt"
    )

    def measure(self, ctx) -> Measurement:
        probe = getattr(ctx, "chat_format", None)
        if probe is None or not probe.rows:
            raise SkipCheck("no training rows to compare with inference")
        problems = []
        rows = probe.rows[:SAMPLE]
        for index, row in enumerate(rows):
            tokens, offset = probe.process(row)
            problem = row_problem(row, list(tokens), int(offset), probe)
            if problem:
                problems.append(f"row {index}: {problem}")
        evidence = {
            "rows_compared": len(rows),
            "inference": probe.inference,
            "mask_prompt": probe.mask_prompt,
            "problems": problems[:5],
        }
        return Measurement(len(problems), 0, evidence)

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if measurement.observed == 0:
            return "pass", (
                f"{ev['rows_compared']} rows: trained as {ev['inference']} inference prompts"
            )
        return "fail", (
            f"{measurement.observed} of {ev['rows_compared']} rows: {ev['problems'][0]}"
        )
