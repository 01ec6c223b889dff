"""A user's own LoRA steps as a Recipe: `--recipe module:object` gates *their* code.

The object supplies any subset of the steps below; every step it leaves out comes from
the correct recipe (`lora_harness.lora.recipe.CORRECT`), exactly as a fault swaps one
step (`lora_harness.lora.faults`). It may be

* a `Recipe` (e.g. `dataclasses.replace(CORRECT, unfreeze=my_unfreeze)`),
* a mapping of step name -> callable (unknown names are an error),
* a class (instantiated with no arguments) or any object/module whose attributes named
  after a step are the steps (other attributes are ignored, unless one is a near-miss of
  a step it does not supply, e.g. `unfreze`: that is an error, not silently the default).

Everything is checked at load: a missing module or object, a near-miss name, a step that
is not callable or cannot take the arguments the trainer passes is one `InputError`
(exit 2). The user's module is imported with the current directory on `sys.path`, as
`python -m` and pytest's rootdir do, so `--recipe mybackend.lora:RECIPE` works from the
root of the user's repository without installing it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Mapping
from typing import Protocol

from lora_harness.core.errors import InputError
from lora_harness.lora.recipe import CORRECT, STEPS, Recipe


class RecipeSteps(Protocol):
    """The protocol: one method per step, each called by the harness's trainer as shown."""

    def freeze(self, model) -> None:
        """Freeze every base weight; called first, on the unconverted model."""

    def convert(self, model, lora) -> None:
        """Replace the selected Linear modules by LoRA modules in place, as `lora`
        (a `LoRAConfig`: rank, scale, dropout, keys, num_layers, fine_tune_type) asks."""

    def unfreeze(self, model, lora) -> None:
        """Make exactly the adapter leaves (lora_a, lora_b; m for DoRA) trainable."""

    def init_optimizer(self, optimizer, model) -> None:
        """Initialise the optimizer's state (the harness makes an Adam optimizer)."""

    def value_and_grad(self, model, loss_fn):
        """Return `f(model, *batch) -> (loss_fn(model, *batch), grads)`; the grads go to
        `optimizer.update(model, grads)` inside the compiled step."""

    def loss(self, model, batch, lengths):
        """SFT loss: `(mean loss, number of loss tokens)` as mlx-lm's `default_loss`."""

    def count_trainable(self, model) -> int:
        """The trainer's own count of trainable *arrays* (what it logs and asserts)."""

    def tokenize(self, rows, tokenizer):
        """Rows of train.jsonl -> a dataset whose items are `(token ids, offset)`."""

    def save(self, model, lora, folder):
        """Write the adapter to `folder` in mlx-lm's format; return the folder."""

    def fuse(self, model) -> None:
        """Fuse every LoRA module of `model` (loaded with the adapter) into its base layer."""

    def preference_loss(self, model, tokens, spans, reference):
        """DPO loss (`--trainer dpo`): `(loss, count)`; reference = base log-probs."""

    def average_gradients(self, grads):
        """Data-parallel gradient average (`--distributed`)."""


# The steps a training run goes through: a recipe with none of them is not the user's training.
TRAINING_STEPS = ("freeze", "convert", "unfreeze", "init_optimizer", "value_and_grad", "loss")
# Under --trainer dpo the loss the run trains with is the preference loss.
DPO_TRAINING_STEPS = TRAINING_STEPS + ("preference_loss",)


def load(spec: str, trainer: str = "sft") -> Recipe:
    """`module:object` -> the correct recipe with the object's steps swapped in."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"--recipe {spec!r} must look like module:object, e.g. mypkg.lora:RECIPE")
    _import_from_cwd()
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"--recipe {spec}: cannot import {module_name} ({_line(exc)}); run from the folder that "
            "holds the package, or pip install it"
        )
    except Exception as exc:  # the user's module failed while importing: say where, briefly
        raise InputError(
            f"--recipe {spec}: importing {module_name} raised {exc.__class__.__name__}: {_line(exc)}"
        )
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise InputError(f"--recipe {spec}: {module_name} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return from_object(obj, spec, trainer)


def from_object(obj, name: str, trainer: str = "sft") -> Recipe:
    """The correct recipe with the steps `obj` supplies; raises InputError naming a bad step."""
    if isinstance(obj, Recipe):
        steps = {s: getattr(obj, s) for s in STEPS if getattr(obj, s) is not getattr(CORRECT, s)}
    else:
        if isinstance(obj, type):
            obj = _instantiate(obj, name)
        steps = _steps_of(obj, name)
    training = DPO_TRAINING_STEPS if trainer == "dpo" else TRAINING_STEPS
    if not any(step in steps for step in training):
        raise InputError(_judges_nothing(name, obj, steps, training))
    for step, fn in steps.items():
        _validate(name, step, fn)
    return dataclasses.replace(CORRECT, name=name, user_steps=tuple(steps), **steps)


def _judges_nothing(spec: str, obj, steps: dict, training: tuple[str, ...]) -> str:
    """The one line for a recipe whose training would be the correct recipe's, not the user's."""
    own = f"it supplies only {', '.join(steps)}" if steps else "it supplies no step"
    names = _look_like_steps(obj)
    has = (
        f"; it has {', '.join(names)}, which are not recipe steps: wrap your code as the steps"
        if names
        else ""
    )
    return (
        f"--recipe {spec} supplies none of the training steps ({', '.join(training)}), so "
        f"nothing of your training would be judged ({own}){has} (see lora_harness.lora.user_recipe)"
    )


def _look_like_steps(obj, limit: int = 8) -> list[str]:
    """The object's public callables that are not steps (apply_lora, train_step, ...)."""
    if isinstance(obj, Recipe | Mapping):
        return []
    names = []
    for attribute in dir(obj):
        if attribute.startswith("_") or attribute in STEPS:
            continue
        value = getattr(obj, attribute, None)
        if callable(value) and not isinstance(value, type):
            names.append(attribute)
    return names[:limit]


def _steps_of(obj, spec: str) -> dict:
    if isinstance(obj, Mapping):
        names = [str(k) for k in obj]
        for unknown in (n for n in names if n not in STEPS and n != "name"):
            raise InputError(f"--recipe {spec}: {_unknown(unknown)}")
        return {n: obj[n] for n in names if n in STEPS}
    steps = {s: getattr(obj, s) for s in STEPS if hasattr(obj, s)}
    for attribute in dir(obj):
        if attribute.startswith("_") or attribute in STEPS:
            continue
        close = difflib.get_close_matches(attribute, list(STEPS), n=1, cutoff=0.85)
        if close and close[0] not in steps:
            raise InputError(f"--recipe {spec}: {_unknown(attribute)}")
    return steps


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, list(STEPS), n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{name!r} is not a recipe step; {hint}steps are {', '.join(STEPS)}"


def _validate(spec: str, step: str, fn) -> None:
    if not callable(fn):
        raise InputError(f"--recipe {spec}: step {step!r} is not callable ({type(fn).__name__})")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    wanted = inspect.signature(getattr(RecipeSteps, step))
    arguments = list(wanted.parameters)[1:]
    try:
        signature.bind(*arguments)
    except TypeError:
        raise InputError(
            f"--recipe {spec}: step {step!r} takes {signature} but the trainer calls "
            f"{step}({', '.join(arguments)})"
        )


def _instantiate(cls: type, spec: str):
    try:
        return cls()
    except Exception as exc:
        raise InputError(
            f"--recipe {spec}: the class {cls.__name__} cannot be built without arguments "
            f"({exc.__class__.__name__}: {_line(exc)}); point --recipe at an instance instead"
        )


def _import_from_cwd() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _line(exc: Exception) -> str:
    """The first line of an exception's message: the error stays one line."""
    return (str(exc).splitlines() or [""])[0][:200]
