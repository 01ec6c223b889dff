"""The run context's DPO training run: what the DPO checks read afterwards."""

from __future__ import annotations

from functools import cached_property

import mlx.core as mx

from harness import data, dpo, trainer


class DPOMixin:
    @cached_property
    def dpo_rows(self) -> list[dict]:
        return data.load_rows(self.data_dir) if self.data_dir else dpo.default_pairs()

    def _train_dpo(self):
        from harness.context import fingerprints, outcome

        model = self.lora_model
        tokens, spans = dpo.encode_pairs(self.dpo_rows, self.tokenizer)
        before = fingerprints(model)
        reference = dpo.reference_logprobs(model, tokens, spans)
        margin_before = dpo.margins(model, tokens, spans, reference).mean().item()
        loss = self.recipe.preference_loss
        gradient_keys: set[str] = set()  # filled when the compiled step is traced
        optimizer = trainer.make_optimizer(model, self.lora, self.recipe)
        metrics = dpo.train_dpo(
            model,
            optimizer,
            tokens,
            spans,
            reference,
            self.lora.iters,
            self.recipe,
            loss=loss,
            callbacks=self.step_callbacks,
            gradient_keys=gradient_keys,
        )
        reference_after = dpo.reference_logprobs(model, tokens, spans)
        extra = {
            "reference_before": reference,
            "reference_after": reference_after,
            "reference_bit_identical": bool(mx.array_equal(reference, reference_after).item()),
            "margin_before": margin_before,
            "margin_after": dpo.margins(model, tokens, spans, reference).mean().item(),
        }
        return outcome(model, before, metrics, gradient_keys, optimizer, extra)
