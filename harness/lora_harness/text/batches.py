"""What the compiled step actually received, one record per step, and which examples made it.

The data checks judge these records, not the rows before batching: truncation to
--max-seq-length, padding and the loss offsets all happen in mlx-lm's `iterate_batches`,
after tokenisation. A record keeps only what the checks need (lengths, offsets, the
padded width and the last few tokens of each row), so it is cheap to take every step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mlx_lm.tuner.datasets import CacheDataset

# Enough trailing tokens to see a terminator behind a chat template's trailing newline(s).
TAIL = 8


@dataclass(frozen=True)
class ConsumedBatch:
    """One batch as the step got it: per row the loss offset, real length and last tokens."""

    offsets: tuple[int, ...]  # first position the loss may score (the prompt mask)
    lengths: tuple[int, ...]  # real tokens of each row, after truncation
    width: int  # padded width of the token array
    tails: tuple[tuple[int, ...], ...]  # each row's last TAIL real tokens
    examples: tuple[int, ...] | None = None  # dataset index of each row, when known

    @property
    def rows(self) -> int:
        return len(self.lengths)


def record(tokens, offsets, lengths, examples=None) -> ConsumedBatch:
    """Summarise a (tokens, offsets, lengths) batch; `lengths` count real tokens per row."""
    tokens = np.asarray(tokens)
    offsets = [int(o) for o in np.asarray(offsets).reshape(-1)]
    lengths = [int(n) for n in np.asarray(lengths).reshape(-1)]
    tails = tuple(
        tuple(int(t) for t in tokens[row, max(0, n - TAIL) : n]) for row, n in enumerate(lengths)
    )
    return ConsumedBatch(
        offsets=tuple(offsets),
        lengths=tuple(lengths),
        width=int(tokens.shape[1]),
        tails=tails,
        examples=tuple(examples) if examples is not None else None,
    )


def record_sft(tokens, lengths, examples=None) -> ConsumedBatch:
    """An mlx-lm batch: `lengths` is (B, 2) of (prompt offset, real length)."""
    lengths = np.asarray(lengths)
    return record(tokens, lengths[:, 0], lengths[:, 1], examples)


class FetchLog:
    """Wraps a dataset and logs which examples `iterate_batches` fetches, in order.

    The batcher fetches each batch's rows just before it yields the batch, so the last
    `rows` indices fetched are that batch's examples (any fetches made to sort come first).
    """

    def __init__(self, dataset):
        self._dataset, self.fetched = dataset, []

    def __getitem__(self, index: int):
        self.fetched.append(index)
        return self._dataset[index]

    def __len__(self) -> int:
        return len(self._dataset)

    def itemlen(self, index: int):
        return self._dataset.itemlen(index)

    def last(self, rows: int) -> tuple[int, ...]:
        return tuple(self.fetched[-rows:])


class CacheFetchLog(FetchLog, CacheDataset):
    """mlx-lm sorts a CacheDataset by its itemlen: keep that type so the batches match."""


def fetch_log(dataset) -> FetchLog:
    """A FetchLog that `iterate_batches` sorts exactly as it would sort `dataset`."""
    return CacheFetchLog(dataset) if isinstance(dataset, CacheDataset) else FetchLog(dataset)
