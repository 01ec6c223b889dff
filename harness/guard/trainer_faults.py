"""Held-out trainer faults, each taken from a public tracker and coded through the guard's
seams (a probe's trainer, a resume path, an optimizer handed in). The tests run each one and
show the check it is listed with failing on it; the clean trainers pass the same checks.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from lora_harness.lora import trainer


def mean_of_means_trainer(model, optimizer, micro_batches, k) -> None:
    """Averages per-micro-batch token means (transformers #34191 before 4.46, torchtune #1875
    before its fix, mlx-lm PR #1413): short micro-batches weigh as much as long ones."""
    from mlx_lm.tuner.trainer import default_loss

    grad_fn = nn.value_and_grad(model, default_loss)
    window = []
    for tokens, lengths in micro_batches:
        _, grads = grad_fn(model, tokens, lengths)
        window.append(grads)
        if len(window) == k:
            total = tree_map(lambda *g: sum(g) / k, *window)
            optimizer.update(model, total)
            mx.eval(model.state, optimizer.state)
            window = []
    if window:
        total = tree_map(lambda *g: sum(g) / len(window), *window)
        optimizer.update(model, total)
        mx.eval(model.state, optimizer.state)


def drop_partial_window_trainer(model, optimizer, micro_batches, k) -> None:
    """Token-weighted, but the last window shorter than k is never applied (mlx-lm #1544:
    iters not a multiple of grad_accumulation_steps)."""
    step = trainer.make_accumulating_step(model, optimizer, k)
    for tokens, lengths in micro_batches:
        step(tokens, lengths)
        mx.eval(model.state, optimizer.state)


def resume_without_step(make_optimizer, batches):
    """Restores the moments but drops the optimizer's step (a state dict saved without its
    counters; torchtune #2360-style): Adam's bias correction and the schedule restart."""
    from mlx.utils import tree_unflatten

    from lora_harness.guard.resume import harness_probe
    from lora_harness.lora import checkpoint

    probe = harness_probe(make_optimizer, batches)

    def resume(model, folder):
        model.load_weights(f"{folder}/{checkpoint.ADAPTERS}", strict=False)
        state = mx.load(f"{folder}/{checkpoint.OPTIMIZER}")
        state.pop("step")
        optimizer = make_optimizer()
        optimizer.state = {**optimizer.state, **tree_unflatten(list(state.items()))}
        return optimizer

    probe.resume, probe.trainer_name = resume, "resume_without_step"
    return probe


def resume_reinitialises_adapters(make_optimizer, batches):
    """Restores the optimizer but not the adapter weights (PEFT/transformers
    resume_from_checkpoint with a LoRA model whose adapter file was not found: training
    continues from freshly initialised adapters)."""
    from mlx.utils import tree_unflatten

    from lora_harness.guard.resume import harness_probe
    from lora_harness.lora import checkpoint

    probe = harness_probe(make_optimizer, batches)

    def resume(model, folder):
        state = mx.load(f"{folder}/{checkpoint.OPTIMIZER}")
        optimizer = make_optimizer()
        optimizer.state = tree_unflatten(list(state.items()))
        return optimizer

    probe.resume, probe.trainer_name = resume, "resume_reinitialises_adapters"
    return probe


def schedule_ignored_optimizer(args):
    """The optimizer gets the constant learning_rate although lr_schedule is configured
    (a hand-written loop that reads config['learning_rate'] only; mlx-examples #1046-style)."""
    import mlx.optimizers as optim

    return optim.Adam(learning_rate=float(args.learning_rate))


def update_every_micro_batch_trainer(model, optimizer, micro_batches, k) -> None:
    """Steps the optimizer on every micro-batch with the gradient divided by k (accumulation
    that forgot to hold the update): k times the updates, the schedule k times too fast."""
    step = trainer.make_step(model, optimizer)
    for tokens, lengths in micro_batches:
        step(tokens, lengths)
        mx.eval(model.state, optimizer.state)


def offset_without_generation_prompt(rows, tokenizer):
    """mlx-lm's ChatDataset with the assistant offset computed without the generation prompt
    (mlx-examples #1021-style): the loss covers '<|im_start|>assistant\\n', which inference
    supplies, so the model learns to emit it."""
    from mlx_lm.tuner.datasets import ChatDataset

    class Shifted(ChatDataset):
        def process(self, d):
            tokens, _ = super().process(d)
            offset = len(self.tokenizer.apply_chat_template(d["messages"][:-1], return_dict=False))
            return tokens, offset

    return Shifted(rows, tokenizer, mask_prompt=True)
