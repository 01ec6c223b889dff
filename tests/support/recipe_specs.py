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
