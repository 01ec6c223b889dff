"""Recipe objects for the `--recipe module:object` load-time validation tests."""

import dataclasses

from lora_harness.lora.recipe import CORRECT


def _unfreeze(model, lora):
    model.unfreeze(keys=["lora_a", "lora_b"], strict=False)


class MisnamedStep:
    def unfreez(self, model, lora):  # a typo: would silently fall back to the correct step
        _unfreeze(model, lora)


MISNAMED_KEY = {"unfreez": _unfreeze}
NOT_CALLABLE = {"freeze": 3}
WRONG_ARITY = {"unfreeze": lambda model: None}
NO_STEPS = object()
AS_RECIPE = dataclasses.replace(CORRECT, unfreeze=_unfreeze)
AS_DICT = {"unfreeze": _unfreeze, "name": "ignored"}


class AsClass:
    def unfreeze(self, model, lora):
        _unfreeze(model, lora)

    def helper(self):  # other attributes of a user's class are not steps and are ignored
        return None


class NeedsArguments:
    def __init__(self, path):
        self.path = path

    def freeze(self, model):
        model.freeze()


class SeedManager:
    """The seed's surface over the example backend's mlx_adapter_manager: one apply_lora
    (freeze -> convert -> unfreeze inside), the trainable count, and a train step; only
    count_trainable is named like a recipe step, so nothing of the training is the user's."""

    def __init__(self, *bugs: str):
        self.bugs = frozenset(bugs)

    def _manager(self):
        import sys
        from pathlib import Path

        example = str(Path(__file__).resolve().parents[2] / "examples" / "user_backend")
        if example not in sys.path:
            sys.path.insert(0, example)
        from mlx_backend.mlx_adapter_manager import MLXAdapterManager

        return MLXAdapterManager(bugs=self.bugs)

    def apply_lora(self, model):
        return self._manager().apply_lora(model)

    def count_trainable(self, model):
        return self._manager().count_trainable(model)

    def train_step(self, model, batch):
        raise NotImplementedError("the seed's step lives in its trainer")


SEED_MANAGER = SeedManager()
SEED_MANAGER_UNFREEZE_BUG = SeedManager("unfreeze_without_keys")  # the bug is in apply_lora
ONLY_FUSE = {"fuse": lambda model: None}  # not a training step either


def _tokenize_raising(rows, tokenizer):
    raise KeyError("text")


TOKENIZE_RAISES = {"unfreeze": _unfreeze, "tokenize": _tokenize_raising}
