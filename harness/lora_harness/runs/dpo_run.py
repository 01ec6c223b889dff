"""The DPO training run: policy = base + LoRA, reference = the adapter disabled."""

from __future__ import annotations

import mlx.core as mx

from lora_harness.lora import dpo, trainer
from lora_harness.runs.training import DPOOutcome, TrainingOutcome, fingerprints, outcome
from lora_harness.text.batches import ConsumedBatch


def train_dpo(model_part, step_callbacks=()) -> TrainingOutcome:
    model = model_part.lora_model
    tokens, spans = dpo.encode_pairs(model_part.dpo_rows, model_part.tokenizer)
    before = fingerprints(model)
    reference = dpo.reference_logprobs(model, tokens, spans)
    margin_before = dpo.margins(model, tokens, spans, reference).mean().item()
    gradient_keys: set[str] = set()  # filled when the compiled step is traced
    optimizer = trainer.make_optimizer(model, model_part.lora, model_part.recipe)
    consumed: list[ConsumedBatch] = []
    metrics = dpo.train_dpo(
        model,
        optimizer,
        tokens,
        spans,
        reference,
        model_part.lora.iters,
        model_part.recipe,
        loss=model_part.recipe.preference_loss,
        callbacks=step_callbacks,
        gradient_keys=gradient_keys,
        batch_log=consumed,
    )
    reference_after = dpo.reference_logprobs(model, tokens, spans)
    result = outcome(model, before, metrics, gradient_keys, optimizer, consumed)
    result.dpo = DPOOutcome(
        reference_before=reference,
        reference_after=reference_after,
        reference_bit_identical=bool(mx.array_equal(reference, reference_after).item()),
        margin_before=margin_before,
        margin_after=dpo.margins(model, tokens, spans, reference).mean().item(),
    )
    return result
