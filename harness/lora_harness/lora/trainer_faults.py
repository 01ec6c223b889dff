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
    """Averages per-micro-batch token means: what mlx-lm 0.32.2 does (mlx-lm PRs #1413/#1544,
    closed unmerged) and torchtune did before PR #1875 (huggingface/blog PR #2414 for
    transformers): short micro-batches weigh as much as long ones."""
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
    """Token-weighted, but the last window shorter than k is never applied (the second bug
    of mlx-lm PR #1544: iters not a multiple of grad_accumulation_steps)."""
    step = trainer.make_accumulating_step(model, optimizer, k)
    for tokens, lengths in micro_batches:
        step(tokens, lengths)
        mx.eval(model.state, optimizer.state)


def resume_without_step(make_optimizer, batches):
    """Restores the moments but not the optimizer's step: the LR schedule restarts after a
    resume (lm-sys/FastChat PR #1280: 'we lose the LR schedule'; starVLA PR #210: an LR
    spike after resuming), and Adam's bias correction starts over."""
    from mlx.utils import tree_unflatten

    from lora_harness.lora import checkpoint
    from lora_harness.lora.resume_probe import harness_probe

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
    """Restores the optimizer but not the adapter weights: training continues from freshly
    initialised adapters (huggingface/diffusers #12689, huggingface/lerobot #3459)."""
    from mlx.utils import tree_unflatten

    from lora_harness.lora import checkpoint
    from lora_harness.lora.resume_probe import harness_probe

    probe = harness_probe(make_optimizer, batches)

    def resume(model, folder):
        state = mx.load(f"{folder}/{checkpoint.OPTIMIZER}")
        optimizer = make_optimizer()
        optimizer.state = tree_unflatten(list(state.items()))
        return optimizer

    probe.resume, probe.trainer_name = resume, "resume_reinitialises_adapters"
    return probe


def schedule_ignored_optimizer(args):
    """The optimizer gets the constant learning_rate although a schedule is configured (an
    MLX SFT wrapper forwarding only learning_rate: MakazhanAlpamys/Soup #686)."""
    import mlx.optimizers as optim

    return optim.Adam(learning_rate=float(args.learning_rate))


def update_every_micro_batch_trainer(model, optimizer, micro_batches, k) -> None:
    """Steps the optimizer (and so its schedule) on every micro-batch instead of once per
    window: the schedule runs k times too fast (huggingface/accelerate #963,
    Lightning-AI/pytorch-lightning #1476)."""
    step = trainer.make_step(model, optimizer)
    for tokens, lengths in micro_batches:
        step(tokens, lengths)
        mx.eval(model.state, optimizer.state)


def offset_without_generation_prompt(rows, tokenizer):
    """mlx-lm's ChatDataset with the assistant offset computed without the generation prompt
    (fixed in mlx-lm PR #584): the loss covers the assistant header, which inference
    supplies, so the model learns to emit it."""
    from mlx_lm.tuner.datasets import ChatDataset

    class Shifted(ChatDataset):
        def process(self, d):
            tokens, _ = super().process(d)
            offset = len(self.tokenizer.apply_chat_template(d["messages"][:-1], return_dict=False))
            return tokens, offset

    return Shifted(rows, tokenizer, mask_prompt=True)
