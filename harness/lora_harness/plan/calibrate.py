"""`plan --calibrate`: a few real training steps at the planned shape, peak memory measured.

The batch is random tokens of exactly the planned (batch, sequence) shape, every token
scored, so the measured peak belongs to the shape the plan predicted for and not to
whatever lengths a dataset happens to have. Peak is `mx.get_peak_memory()` after
`mx.reset_peak_memory()` once the weights are loaded: the loader's own transients
(random weights are drawn one float32 tensor at a time) are not part of training.
"""

from __future__ import annotations

import gc
import statistics
import time

import mlx.core as mx

from lora_harness.lora import trainer
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.plan.checkpoint import grad_checkpoint


def batch(vocab_size: int, batch_size: int, seq_length: int, seed: int = 0):
    """(tokens, lengths) in mlx-lm's layout: seq_length + 1 tokens, so the model sees seq_length."""
    key = mx.random.key(seed)
    tokens = mx.random.randint(0, vocab_size, (batch_size, seq_length + 1), key=key)
    lengths = mx.array([[0, seq_length + 1]] * batch_size)
    return tokens.astype(mx.int32), lengths


def prepared(source, lora: LoRAConfig):
    """The LoRA model with its weights evaluated, as a training run holds it."""
    model, _ = source.load()
    trainer.prepare_lora_model(model, lora)
    mx.eval(model.parameters())
    return model


def measure(model, lora: LoRAConfig, vocab_size: int, shape: dict, steps: int = 3) -> dict:
    """Peak memory and tokens/s of `steps` compiled steps at `shape` (batch, seq, checkpoint)."""
    tokens, lengths = batch(vocab_size, shape["batch_size"], shape["seq_length"], lora.seed)
    mx.eval(tokens, lengths)
    optimizer = trainer.make_optimizer(model, lora)
    with grad_checkpoint(model, shape.get("grad_checkpoint", False)):
        step = trainer.make_step(model, optimizer)
        state = [model.state, optimizer.state, mx.random.state]
        model.train()
        gc.collect()
        mx.clear_cache()
        mx.reset_peak_memory()
        resident = mx.get_active_memory()
        times = []
        for _ in range(steps):
            tic = time.perf_counter()
            loss, _ = step(tokens, lengths)
            mx.eval(state, loss)
            times.append(time.perf_counter() - tic)
        peak = mx.get_peak_memory()
    del step, optimizer, state
    gc.collect()
    mx.clear_cache()
    seconds = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {
        "measured_peak_bytes": peak,
        "resident_before_bytes": resident,
        "tokens_per_second": tokens.shape[0] * shape["seq_length"] / seconds,
        "step_s": seconds,
        "first_step_s": times[0],
        "steps": steps,
        "device": str(mx.default_device()),
    }
