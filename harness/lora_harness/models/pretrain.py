"""Pre-train the fixture model on the two-voice corpus so it writes real sentences.

Generation checks mean nothing on random weights. A few hundred full-model steps on the
synthetic corpus (every example ends with <|endoftext|>) teach the tiny model both voices
and when to stop; the result is cached with the rest of the fixture.
"""

from __future__ import annotations

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx_lm.tuner.trainer import default_loss


def pretrain(model: nn.Module, tokenizer, texts: list[str], steps: int, seed: int) -> list[float]:
    """Train every weight of `model` on `texts`; returns the loss per step."""
    from lora_harness.text.data import tokenized_dataset

    mx.random.seed(seed)
    dataset = tokenized_dataset([{"text": t} for t in texts], tokenizer)
    schedule = optim.join_schedules(
        [optim.linear_schedule(1e-4, 4e-3, 20), optim.cosine_decay(4e-3, steps - 20, end=2e-4)],
        [20],
    )
    optimizer = optim.AdamW(learning_rate=schedule, weight_decay=0.0)
    loss_and_grad = nn.value_and_grad(model, default_loss)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, lengths):
        (loss, _), grads = loss_and_grad(model, tokens, lengths)
        optimizer.update(model, grads)
        return loss

    model.train()
    batches = tight_batches([dataset[i][0] for i in range(len(dataset))], 16, seed)
    losses = []
    for _, (tokens, lengths) in zip(range(steps), batches, strict=False):
        loss = step(tokens, lengths)
        mx.eval(state, loss)
        losses.append(loss.item())
    model.eval()
    return losses


def tight_batches(sequences: list[list[int]], batch_size: int, seed: int):
    """Endless (tokens, lengths) batches padded only to their longest member.

    mlx-lm pads to a multiple of 32; on a CPU where MLX matmuls run at a few GFLOPS
    that doubles the cost of sequences this short.
    """
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(sequences))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            chosen = [sequences[i] for i in order[start : start + batch_size]]
            width = max(len(s) for s in chosen)
            tokens = np.zeros((batch_size, width), np.int32)
            for row, sequence in enumerate(chosen):
                tokens[row, : len(sequence)] = sequence
            lengths = [[0, len(s)] for s in chosen]
            yield mx.array(tokens), mx.array(lengths)
