"""The seed's working LoRA recipe, one replaceable step per field.

The trainer calls these steps in order; a fault (see `lora_harness.lora.faults`) is the same
recipe with one step swapped for a known-bad variant, which is how the checks are
shown to catch the bugs they exist for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.nn.utils import average_gradients
from mlx.utils import tree_flatten
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers

from lora_harness.lora.adapters import fuse_with_mlx_lm, save_adapter
from lora_harness.lora.dpo import dpo_loss
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.text.data import tokenized_dataset


def freeze_base(model: nn.Module) -> None:
    model.freeze()


def convert_with_mlx_lm(model: nn.Module, lora: LoRAConfig) -> None:
    """The official converter: wraps each selected Linear, keeping `.linear` frozen."""
    linear_to_lora_layers(model, lora.num_layers, lora.lora_parameters(), use_dora=lora.use_dora)


def unfreeze_adapters(model: nn.Module, lora: LoRAConfig) -> None:
    """Unfreeze only the adapter leaves; `unfreeze()` without keys would thaw the base too."""
    keys = ["lora_a", "lora_b"] + (["m"] if lora.use_dora else [])
    model.unfreeze(keys=keys, strict=False)


def init_optimizer_on_trainable(optimizer: optim.Optimizer, model: nn.Module) -> None:
    optimizer.init(model.trainable_parameters())


def module_value_and_grad(model: nn.Module, loss_fn: Callable) -> Callable:
    """Differentiate `model.trainable_parameters()` only (what `nn.value_and_grad` does)."""
    return nn.value_and_grad(model, loss_fn)


def count_trainable_arrays(model: nn.Module) -> int:
    """The trainer's own count, over the flattened tree (a top-level count is wrong)."""
    return len(tree_flatten(model.trainable_parameters()))


@dataclass(frozen=True)
class Recipe:
    """The steps of LoRA preparation and training, each replaceable by a fault."""

    freeze: Callable = freeze_base
    convert: Callable = convert_with_mlx_lm
    unfreeze: Callable = unfreeze_adapters
    init_optimizer: Callable = init_optimizer_on_trainable
    value_and_grad: Callable = module_value_and_grad
    count_trainable: Callable = count_trainable_arrays
    loss: Callable = default_loss
    tokenize: Callable = tokenized_dataset
    fuse: Callable = fuse_with_mlx_lm
    save: Callable = save_adapter  # mlx-lm's adapter format
    preference_loss: Callable = dpo_loss
    average_gradients: Callable = average_gradients
    name: str = "correct"
    # Where the steps come from: the user's --recipe object, a fault; the rest are CORRECT's.
    user_steps: tuple[str, ...] = ()
    fault_steps: tuple[str, ...] = ()

    def provenance(self) -> dict:
        """Which steps ran whose code: what the console and report.run.recipe show."""
        steps = STEPS
        return {
            "name": self.name,
            "user_steps": [s for s in steps if s in self.user_steps],
            "fault_steps": [s for s in steps if s in self.fault_steps],
            "correct_steps": [
                s for s in steps if s not in self.user_steps and s not in self.fault_steps
            ],
        }


NOT_STEPS = ("name", "user_steps", "fault_steps")
# Every step field of Recipe, in order: what a fault or a user's --recipe object may replace.
STEPS: tuple[str, ...] = tuple(f.name for f in fields(Recipe) if f.name not in NOT_STEPS)
CORRECT = Recipe()


def adapter_module_names(model: nn.Module) -> list[str]:
    """Dotted names of every LoRA/DoRA module in `model`."""
    return [name for name, module in model.named_modules() if _is_adapter_module(module)]


def _is_adapter_module(module) -> bool:
    return type(module).__name__ in {
        "LoRALinear",
        "DoRALinear",
        "LoRASwitchLinear",
        "LoRAEmbedding",
        "DoRAEmbedding",
    }


def split_adapter_and_base(model: nn.Module) -> tuple[dict, dict]:
    """All parameters of `model` split into (adapter tensors, base tensors) by name."""
    adapter_modules = set(adapter_module_names(model))
    leaves = {"lora_a", "lora_b", "m"}
    adapter, base = {}, {}
    for name, array in tree_flatten(model.parameters()):
        module, _, leaf = name.rpartition(".")
        is_adapter = leaf in leaves and module in adapter_modules
        (adapter if is_adapter else base)[name] = array
    return adapter, base


def probe_logits(model: nn.Module, tokens: mx.array) -> mx.array:
    """Logits of `tokens` in eval mode (dropout off), evaluated."""
    was_training = model.training
    model.eval()
    logits = model(tokens)
    mx.eval(logits)
    if was_training:
        model.train()
    return logits
