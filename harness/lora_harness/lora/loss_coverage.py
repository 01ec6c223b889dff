"""How many positions the loss should score, derived from the data, never from the loss.

A target at step s is token s of the row (the model predicts it from tokens 0..s-1), so
for a row of real tokens 0..n-1 whose loss starts at token `start` the scored steps are
max(start, 1) .. n-1, and never past the padded width - 1. mlx-lm's `default_loss` also
scores step n, the first padding position after a padded row (mlx-lm PR #1697 proposes
dropping it); whether the installed mlx-lm does is measured on a two-token probe of the
reference loss, so the expectation follows the mlx-lm the user trains with. Under
--mask-prompt a row's `start` is its prompt offset from the data and the tokenizer
(`lora_harness.text.prompt_offsets`), never the offset the recipe's own tokenize returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import mlx.core as mx


@cache
def reference_scores_first_pad() -> bool:
    """Whether the installed mlx-lm's `default_loss` also scores the step past a row's end."""
    from mlx_lm.tuner.trainer import default_loss

    batch = mx.array([[1, 1, 0, 0]])  # two real tokens: only step 1 is a real target

    def uniform(inputs):
        return mx.zeros((*inputs.shape, 2))

    _, scored = default_loss(uniform, batch, mx.array([[0, 2]]))
    return int(scored.item()) == 2


@dataclass(frozen=True)
class RowSpan:
    """One row as the data says it should reach the loss."""

    start: int  # first token the loss may score (the prompt length under --mask-prompt)
    length: int  # real tokens after truncation to --max-seq-length


def expected_row_tokens(row: RowSpan, width: int, first_pad: bool) -> int:
    """Steps the loss should score for `row` in a batch padded to `width` tokens."""
    last = min(row.length if first_pad else row.length - 1, width - 1)
    return max(0, last - max(row.start, 1) + 1)


def expected_tokens(rows: list[RowSpan], width: int, first_pad: bool) -> int:
    return sum(expected_row_tokens(row, width, first_pad) for row in rows)
