"""The SFT training loop: the backend's own optimizer set-up and compiled step."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim


def sft_loss(model: nn.Module, tokens: mx.array, lengths: mx.array):
    """Mean cross-entropy over the completion tokens; (loss, token count)."""
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    count = mask.sum()
    loss = (nn.losses.cross_entropy(logits, targets) * mask).astype(mx.float32).sum() / count
    return loss, count


def gradient_function(model: nn.Module, loss_fn: Callable, bugs=frozenset()) -> Callable:
    if "mx_value_and_grad" in bugs:
        # The bug: differentiate every array of the model, frozen or not.
        def loss_of(parameters, *batch):
            model.update(parameters)
            return loss_fn(model, *batch)

        value_and_grad = mx.value_and_grad(loss_of)
        return lambda model_, *batch: value_and_grad(model_.parameters(), *batch)
    return nn.value_and_grad(model, loss_fn)


def init_optimizer(optimizer: optim.Optimizer, model: nn.Module, bugs=frozenset()) -> None:
    if "skip_optimizer_init" in bugs:
        return
    optimizer.init(model.trainable_parameters())


class MLXSFTTrainer:
    def __init__(self, model: nn.Module, learning_rate: float = 1e-3, bugs=frozenset()):
        self.model, self.bugs = model, frozenset(bugs)
        self.optimizer = optim.Adam(learning_rate=learning_rate)
        init_optimizer(self.optimizer, model, self.bugs)
        self._step = None

    def _compiled_step(self):
        model, optimizer = self.model, self.optimizer
        loss_and_grad = gradient_function(model, sft_loss, self.bugs)
        state = [model.state, optimizer.state, mx.random.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(tokens, lengths):
            (loss, count), grads = loss_and_grad(model, tokens, lengths)
            optimizer.update(model, grads)
            return loss, count

        return step

    def train(self, batches: Iterable, on_loss: Callable | None = None) -> list[float]:
        """One compiled step per (tokens, lengths) batch; `on_loss(step, loss)` after each."""
        self._step = self._step or self._compiled_step()
        state = [self.model.state, self.optimizer.state, mx.random.state]
        self.model.train()
        losses = []
        for number, (tokens, lengths) in enumerate(batches, start=1):
            loss, count = self._step(tokens, lengths)
            mx.eval(state, loss, count)
            losses.append(loss.item())
            if on_loss:
                on_loss(number, losses[-1])
        return losses
