"""A real LoRA training run with the harness recipe: adapters, checkpoints and a metrics file.

What `lora-harness train` (and `remote train` on a Mac Studio) runs. The metrics file is
one JSON line per step, flushed as it goes, so `remote monitor` can follow it live.
"""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

from lora_harness.lora import trainer
from lora_harness.lora.adapters import adapter_weights, replace_file, save_adapter, save_tensors
from lora_harness.models.sources import resolve
from lora_harness.runs.run import Settings
from lora_harness.text import data

METRICS_FILE = "metrics.jsonl"


def train_to_folder(settings: Settings, folder: Path, save_every: int, on_step=None) -> dict:
    from mlx_lm.tuner.trainer import iterate_batches

    from lora_harness.core.errors import InputError

    source = resolve(settings.model)
    if not source.has_weights:
        raise InputError(f"{source.spec} is shape-only; training needs a model with weights")
    model, tokenizer = source.load()
    lora = settings.lora
    dataset = data.tokenized_dataset(data.load_rows(settings.data_dir), tokenizer)
    data.first_batch(dataset, lora.batch_size, lora.max_seq_length, lora.seed)  # size checks
    trainer.prepare_lora_model(model, lora)
    optimizer = trainer.make_optimizer(model, lora)
    folder.mkdir(parents=True, exist_ok=True)
    batches = islice(
        iterate_batches(dataset, lora.batch_size, lora.max_seq_length, loop=True, seed=lora.seed),
        lora.iters,
    )
    # A fresh file: steps of an earlier run in this folder must not read as this one's.
    with open(folder / METRICS_FILE, "w") as metrics_file:

        def record(metrics: dict) -> None:
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
            if save_every and metrics["iteration"] % save_every == 0:
                weights = adapter_weights(model)
                # Via a temporary name: a kill or a full disk never leaves half a checkpoint.
                replace_file(
                    folder / f"{metrics['iteration']:07d}_adapters.safetensors",
                    lambda path: save_tensors(path, weights),
                )
            if on_step:
                on_step(metrics)

        history = trainer.train(
            model,
            optimizer,
            batches,
            callbacks=[record],
            grad_accumulation_steps=lora.grad_accumulation_steps,
        )
    save_adapter(model, lora, folder, extra={"model": source.spec})
    return {"steps": len(history), "last_loss": history[-1]["loss"] if history else None}
