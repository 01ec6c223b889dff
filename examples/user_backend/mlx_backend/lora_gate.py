"""This backend's steps as a lora-harness recipe (the only file that knows the harness exists).

    lora-harness run --recipe mlx_backend.lora_gate:RECIPE
    pytest --lora-model fixture:tiny --lora-recipe mlx_backend.lora_gate:RECIPE

Each step delegates to the backend's own code; the harness supplies the rest (data,
the compiled loop, the adapter files). The other objects plant one seed bug each.
"""

from __future__ import annotations

from mlx_backend import mlx_dpo_trainer, mlx_sft_trainer
from mlx_backend.mlx_adapter_manager import MLXAdapterManager


class BackendRecipe:
    def __init__(self, *bugs: str):
        self.bugs = frozenset(bugs)

    def _manager(self, lora) -> MLXAdapterManager:
        return MLXAdapterManager(
            rank=lora.rank,
            scale=lora.scale,
            dropout=lora.dropout,
            num_layers=lora.num_layers,
            keys=lora.keys,
            fine_tune_type=lora.fine_tune_type,
            bugs=self.bugs,
        )

    def freeze(self, model):
        MLXAdapterManager(bugs=self.bugs).freeze(model)

    def convert(self, model, lora):
        self._manager(lora).convert(model)

    def unfreeze(self, model, lora):
        self._manager(lora).unfreeze(model)

    def init_optimizer(self, optimizer, model):
        mlx_sft_trainer.init_optimizer(optimizer, model, self.bugs)

    def value_and_grad(self, model, loss_fn):
        return mlx_sft_trainer.gradient_function(model, loss_fn, self.bugs)

    def loss(self, model, tokens, lengths):
        return mlx_sft_trainer.sft_loss(model, tokens, lengths)

    def preference_loss(self, model, tokens, spans, reference):
        return mlx_dpo_trainer.dpo_loss(model, tokens, spans, reference)

    def count_trainable(self, model):
        return MLXAdapterManager(bugs=self.bugs).count_trainable(model)


RECIPE = BackendRecipe()
MANUAL_FROM_BASE = BackendRecipe("manual_from_base")
HAND_BUILT_LORA = BackendRecipe("hand_built_lora")
UNFREEZE_WITHOUT_KEYS = BackendRecipe("unfreeze_without_keys")
SKIP_OPTIMIZER_INIT = BackendRecipe("skip_optimizer_init")
# With the optimizer initialised on the adapters, Adam fails at once (KeyError: 'weight');
# the seed's silent version also skipped optimizer.init, so state was created for everything.
MX_VALUE_AND_GRAD = BackendRecipe("mx_value_and_grad", "skip_optimizer_init")
MX_VALUE_AND_GRAD_ONLY = BackendRecipe("mx_value_and_grad")
TOP_LEVEL_COUNT = BackendRecipe("top_level_count")
