"""Where each training example's completion starts, from the row and the tokenizer alone.

The prompt offset is the number of tokens of the example's prompt as the model sees it:
for chat rows, `apply_chat_template` of the messages without the final assistant turn
(with the generation prompt, since the assistant's header belongs to the prompt); for
prompt/completion rows, the user turn alone the same way; text rows have no prompt (0).
This is what mlx-lm's dataset classes compute under --mask-prompt, written again here so
a check can hold a recipe's own `tokenize` to it instead of trusting the offsets it returns.
"""

from __future__ import annotations


def prompt_offset(row: dict, tokenizer) -> int:
    """Tokens of `row`'s prompt (0 for a text row): the first position its loss may score."""
    messages = prompt_messages(row)
    if messages is None:
        return 0
    prompt, ends_with_assistant = messages
    tokens = tokenizer.apply_chat_template(
        prompt,
        tools=row.get("tools"),
        add_generation_prompt=ends_with_assistant,
        return_dict=False,
    )
    return len(tokens)


def inference_prompt(row: dict, tokenizer) -> list[int] | None:
    """The tokens generation is prompted with for `row` (as mlx_lm.generate does with a chat
    template): its prompt messages with the generation prompt; None for a text row."""
    found = prompt_messages(row)
    if found is None:
        return None
    messages, completion_follows = found
    return list(
        tokenizer.apply_chat_template(
            messages if completion_follows else list(row["messages"]),
            tools=row.get("tools"),
            add_generation_prompt=True,
            return_dict=False,
        )
    )


def prompt_messages(row: dict) -> tuple[list[dict], bool] | None:
    """(the messages before the completion, whether a completion turn follows them); None
    for a row without a prompt. Row formats as mlx-lm decides them (prompt/completion first)."""
    if "prompt" in row and "completion" in row:
        return [{"role": "user", "content": row["prompt"]}], True
    if "messages" in row:
        messages = row["messages"]
        return list(messages[:-1]), messages[-1].get("role") == "assistant"
    return None
