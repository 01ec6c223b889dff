"""A minimal DPO trainer in the same recipe and style as the SFT trainer.

Policy = base + LoRA. Reference = the same base with the adapter disabled (LoRA scale 0),
so no second copy of the weights exists; its log-probs are computed once, before training,
and held fixed. Sigmoid DPO loss with `beta`. Data: jsonl rows {prompt, chosen, rejected}.
"""

from __future__ import annotations

import random
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from lora_harness.core.errors import InputError
from lora_harness.lora.adapters import adapter_disabled
from lora_harness.text import batches, corpus

BETA = 0.1


def default_pairs(count: int = 32, seed: int = 0) -> list[dict]:
    """Preference pairs in the fixture's two voices: the folksy answer is preferred."""
    rng = random.Random(f"dpo:{seed}")
    return [
        {
            "prompt": corpus.prompt_for(rng.choice(corpus.TOPICS)),
            "chosen": corpus.sentence("folksy", rng),
            "rejected": corpus.sentence("formal", rng),
        }
        for _ in range(count)
    ]


def encode_pairs(rows: list[dict], tokenizer) -> tuple[mx.array, mx.array]:
    """Tokens (2N, L): chosen rows then rejected rows; lengths (2N, 2) = (response start, end)."""
    sequences, spans = [], []
    for side in ("chosen", "rejected"):
        for number, row in enumerate(rows, start=1):
            if not all(isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")):
                raise InputError(
                    f"DPO row {number} needs string prompt, chosen and rejected fields"
                )
            prompt = tokenizer.encode(row["prompt"] + " ")
            response = tokenizer.encode(row[side], add_special_tokens=False) + [
                tokenizer.eos_token_id
            ]
            sequences.append(prompt + response)
            spans.append((len(prompt), len(prompt) + len(response) - 1))
    width = max(len(s) for s in sequences)
    tokens = np.zeros((len(sequences), width), np.int32)
    for row, sequence in enumerate(sequences):
        tokens[row, : len(sequence)] = sequence
    return mx.array(tokens), mx.array(spans)


def response_mask(spans: mx.array, targets: int) -> mx.array:
    """(rows, targets): True where target step s (token s of the row) is a response token."""
    steps = mx.arange(1, targets + 1)
    return mx.logical_and(steps >= spans[:, 0:1], steps <= spans[:, 1:])


def sequence_logprobs(model, tokens: mx.array, spans: mx.array) -> mx.array:
    """Sum of log p(response token) per sequence (the prompt is masked out)."""
    logits = model(tokens[:, :-1])
    targets = tokens[:, 1:]
    mask = response_mask(spans, targets.shape[1])
    return (-nn.losses.cross_entropy(logits, targets) * mask).astype(mx.float32).sum(axis=1)


def reference_logprobs(model, tokens, spans) -> mx.array:
    with adapter_disabled(model):
        reference = mx.stop_gradient(sequence_logprobs(model, tokens, spans))
        mx.eval(reference)
    return reference


def margins(model, tokens, spans, reference, beta: float = BETA) -> mx.array:
    """beta * ((policy - reference) on chosen - (policy - reference) on rejected), per pair."""
    half = tokens.shape[0] // 2
    advantage = sequence_logprobs(model, tokens, spans) - reference
    return beta * (advantage[:half] - advantage[half:])


def dpo_loss(model, tokens, spans, reference):
    loss = -nn.log_sigmoid(margins(model, tokens, spans, reference)).mean()
    # The tokens the log-probs were summed over, chosen and rejected alike.
    return loss, response_mask(spans, tokens.shape[1] - 1).sum()


def train_dpo(
    model,
    optimizer,
    tokens,
    spans,
    reference,
    iters: int,
    recipe,
    loss=dpo_loss,
    callbacks=(),
    gradient_keys: set | None = None,
    batch_log: list | None = None,
):
    """`iters` compiled DPO steps on the pairs; per-step metrics like the SFT trainer's.

    `batch_log`, if given, receives a record of the batch each step is handed.
    """
    import time

    loss_and_grad = recipe.value_and_grad(model, loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens_, spans_, reference_):
        (value, count), grads = loss_and_grad(model, tokens_, spans_, reference_)
        if gradient_keys is not None:  # recorded at trace time, as in the SFT step
            gradient_keys.update(name for name, _ in tree_flatten(grads))
        optimizer.update(model, grads)
        return value, count

    model.train()
    history = []
    for iteration in range(1, iters + 1):
        if batch_log is not None:  # a span ends on its last token; a length counts past it
            batch_log.append(batches.record(tokens, spans[:, 0], spans[:, 1] + 1))
        tic = time.perf_counter()
        value, count = step(tokens, spans, reference)
        mx.eval(state, value)
        seconds = time.perf_counter() - tic
        history.append(
            {
                "iteration": iteration,
                "loss": value.item(),
                "loss_tokens": int(count.item()),
                "step_time_s": seconds,
                "tokens_per_second": None,
                "peak_memory_gb": mx.get_peak_memory() / 1e9,
                "active_memory_gb": mx.get_active_memory() / 1e9,
                "cache_memory_gb": mx.get_cache_memory() / 1e9,
            }
        )
        for callback in callbacks:
            callback(history[-1])
    return history
