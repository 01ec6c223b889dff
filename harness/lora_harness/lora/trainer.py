"""A minimal MLX LoRA trainer: the seed's recipe, a compiled step, callbacks for observers.

Shaped like `mlx_lm.tuner.trainer`: plain functions, the loss and the batches passed in,
one `mx.eval` per step, and per-step metrics handed to callbacks (the seam the checks,
the progress bar and the report use).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten, tree_map

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT, Recipe
from lora_harness.text.batches import ConsumedBatch, record_sft


class StepCallback(Protocol):
    def __call__(self, metrics: dict) -> None: ...


def prepare_lora_model(model: nn.Module, lora: LoRAConfig, recipe: Recipe = CORRECT) -> nn.Module:
    """freeze -> convert -> unfreeze adapters, as the recipe says."""
    mx.random.seed(lora.seed)
    recipe.freeze(model)
    recipe.convert(model, lora)
    recipe.unfreeze(model, lora)
    return model


def make_optimizer(model: nn.Module, lora: LoRAConfig, recipe: Recipe = CORRECT) -> optim.Optimizer:
    optimizer = optim.Adam(learning_rate=lora.learning_rate)
    recipe.init_optimizer(optimizer, model)
    return optimizer


def train(
    model: nn.Module,
    optimizer: optim.Optimizer,
    batches: Iterable[tuple[mx.array, mx.array]],
    recipe: Recipe = CORRECT,
    loss: Callable | None = None,
    callbacks: Iterable[StepCallback] = (),
    distributed: bool = False,
    gradient_keys: set | None = None,
    batch_log: list[ConsumedBatch] | None = None,
    grad_accumulation_steps: int = 1,
) -> list[dict]:
    """Train on every batch of `batches` (loss defaults to the recipe's); returns per-step metrics.

    With `distributed`, each rank passes its own shard and gradients are averaged across
    ranks inside the compiled step, as mlx-lm's trainer does. `batch_log`, if given,
    receives a record of each batch exactly as the step is handed it. With
    `grad_accumulation_steps` k > 1 each batch is a micro-batch and the optimizer steps
    once per k of them (and once for a last, shorter window), on the token-weighted mean.
    """
    if grad_accumulation_steps > 1:
        step = make_accumulating_step(
            model, optimizer, grad_accumulation_steps, recipe, loss, distributed, gradient_keys
        )
    else:
        step = make_step(model, optimizer, recipe, loss, distributed, gradient_keys)
    state = [model.state, optimizer.state, mx.random.state]
    model.train()
    history = []
    for iteration, (tokens, lengths) in enumerate(batches, start=1):
        if batch_log is not None:
            batch_log.append(record_sft(tokens, lengths))
        tic = time.perf_counter()
        loss_value, loss_tokens = step(tokens, lengths)
        mx.eval(state, loss_value, loss_tokens)
        history.append(_step_metrics(iteration, loss_value, loss_tokens, time.perf_counter() - tic))
        for callback in callbacks:
            callback(history[-1])
    if hasattr(step, "flush"):
        step.flush()  # the last, shorter window is applied, never dropped
        mx.eval(state)
    return history


def make_step(
    model: nn.Module,
    optimizer: optim.Optimizer,
    recipe: Recipe = CORRECT,
    loss=None,
    distributed=False,
    gradient_keys: set | None = None,
):
    """The compiled training step: gradient of the recipe's loss, then the optimizer update.

    `gradient_keys`, if given, receives the names in the gradient tree when the step is
    traced: what the gradient covers is known without a separate (uncompiled) probe.
    """
    loss_and_grad = recipe.value_and_grad(model, loss or recipe.loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(tokens, lengths):
        (loss_value, loss_tokens), grads = loss_and_grad(model, tokens, lengths)
        if gradient_keys is not None:
            gradient_keys.update(name for name, _ in tree_flatten(grads))
        if distributed:
            grads = recipe.average_gradients(grads)
        optimizer.update(model, grads)
        return loss_value, loss_tokens

    return step


def make_accumulating_step(
    model: nn.Module,
    optimizer: optim.Optimizer,
    steps: int,
    recipe: Recipe = CORRECT,
    loss=None,
    distributed=False,
    gradient_keys: set | None = None,
):
    """A step over micro-batches: the update of every `steps` of them is the gradient of the
    token mean over all their loss tokens, as one batch of the same rows would give.

    Each micro-batch's gradient is weighted by its loss tokens (its token *sum*), and the
    window is divided by the window's tokens. mlx-lm 0.32.2 averages per-micro-batch token
    means instead, which differs whenever micro-batches hold different token counts.
    `step.flush()` applies a last window shorter than `steps`.
    """
    loss_and_grad = recipe.value_and_grad(model, loss or recipe.loss)
    state = [model.state, optimizer.state, mx.random.state]
    window = {"grads": None, "tokens": None, "count": 0}

    @partial(mx.compile, inputs=state, outputs=state)
    def accumulate(tokens, lengths, previous, previous_tokens):
        (loss_value, loss_tokens), grads = loss_and_grad(model, tokens, lengths)
        if gradient_keys is not None:
            gradient_keys.update(name for name, _ in tree_flatten(grads))
        weight = loss_tokens.astype(mx.float32)
        grads = tree_map(lambda g, p: g * weight + p, grads, previous)
        return loss_value, loss_tokens, grads, previous_tokens + loss_tokens

    def apply():
        grads, total = window["grads"], window["tokens"]
        if distributed:  # token sums and token counts are both summed over ranks
            grads = tree_map(mx.distributed.all_sum, grads)
            total = mx.distributed.all_sum(total)
        optimizer.update(model, tree_map(lambda g: g / total.astype(g.dtype), grads))
        window.update(grads=None, tokens=None, count=0)

    def step(tokens, lengths):
        if window["grads"] is None:
            zeros = tree_map(mx.zeros_like, model.trainable_parameters())
            window.update(grads=zeros, tokens=mx.array(0, mx.int32))
        loss_value, loss_tokens, window["grads"], window["tokens"] = accumulate(
            tokens, lengths, window["grads"], window["tokens"]
        )
        mx.eval(window["grads"], window["tokens"])  # not a k-step graph of activations
        window["count"] += 1
        if window["count"] == steps:
            apply()
        return loss_value, loss_tokens

    def flush():
        if window["count"]:
            apply()

    step.flush = flush
    return step


def _step_metrics(iteration: int, loss_value, loss_tokens, seconds: float) -> dict:
    tokens = int(loss_tokens.item())
    return {
        "iteration": iteration,
        "loss": float(loss_value.item()),
        "loss_tokens": tokens,
        "step_time_s": seconds,
        "tokens_per_second": tokens / seconds if seconds > 0 else None,
        "peak_memory_gb": mx.get_peak_memory() / 1e9,
        "active_memory_gb": mx.get_active_memory() / 1e9,
        "cache_memory_gb": mx.get_cache_memory() / 1e9,
    }
