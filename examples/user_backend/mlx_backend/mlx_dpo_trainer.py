"""The DPO training loop: policy = base + LoRA, reference = the same model, adapter disabled."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from mlx_backend.mlx_sft_trainer import gradient_function, init_optimizer

BETA = 0.1


def response_mask(tokens, spans):
    """Which target positions are response tokens: the only ones the DPO loss scores."""
    steps = mx.arange(1, tokens.shape[1])
    return mx.logical_and(steps >= spans[:, 0:1], steps <= spans[:, 1:])


def sequence_logprobs(model, tokens, spans):
    logits = model(tokens[:, :-1])
    mask = response_mask(tokens, spans)
    return (-nn.losses.cross_entropy(logits, tokens[:, 1:]) * mask).astype(mx.float32).sum(axis=1)


@contextmanager
def adapters_off(model):
    modules = [m for _, m in model.named_modules() if hasattr(m, "lora_b")]
    scales = [m.scale for m in modules]
    for module in modules:
        module.scale = 0.0
    try:
        yield
    finally:
        for module, scale in zip(modules, scales, strict=True):
            module.scale = scale


def reference_logprobs(model, tokens, spans):
    with adapters_off(model):
        reference = mx.stop_gradient(sequence_logprobs(model, tokens, spans))
        mx.eval(reference)
    return reference


def dpo_loss(model, tokens, spans, reference):
    """Sigmoid DPO over (chosen rows, then rejected rows); (loss, response tokens scored)."""
    half = tokens.shape[0] // 2
    advantage = sequence_logprobs(model, tokens, spans) - reference
    margin = BETA * (advantage[:half] - advantage[half:])
    return -nn.log_sigmoid(margin).mean(), response_mask(tokens, spans).sum()


class MLXDPOTrainer:
    def __init__(self, model, learning_rate: float = 1e-3, bugs=frozenset()):
        self.model, self.bugs = model, frozenset(bugs)
        self.optimizer = optim.Adam(learning_rate=learning_rate)
        init_optimizer(self.optimizer, model, self.bugs)

    def train(self, tokens, spans, iters: int, on_loss: Callable | None = None) -> list[float]:
        model, optimizer = self.model, self.optimizer
        reference = reference_logprobs(model, tokens, spans)
        loss_and_grad = gradient_function(model, dpo_loss, self.bugs)
        state = [model.state, optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(tokens_, spans_, reference_):
            (loss, count), grads = loss_and_grad(model, tokens_, spans_, reference_)
            optimizer.update(model, grads)
            return loss, count

        model.train()
        losses = []
        for number in range(1, iters + 1):
            loss, _ = step(tokens, spans, reference)
            mx.eval(state, loss)
            losses.append(loss.item())
            if on_loss:
                on_loss(number, losses[-1])
        return losses
