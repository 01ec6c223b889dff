"""Known LoRA bugs, each the correct recipe with one step swapped for the broken variant.

A fault does not name its catchers: each check declares the faults it catches (its
`catches`), so a new check touches only its own file, and `lora-harness selftest` runs
every fault to verify those declarations. Sources: the seed's "what doesn't work" list
and the failures in ANCHORS.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tuner.lora import LoRALinear
from mlx_lm.tuner.trainer import default_loss
from mlx_lm.tuner.utils import linear_to_lora_layers

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT, Recipe, convert_with_mlx_lm


@dataclass(frozen=True)
class Fault:
    name: str
    description: str
    recipe: Recipe
    lora_overrides: dict = field(default_factory=dict)
    swapped_steps: tuple[str, ...] = ()  # the Recipe fields this fault replaces

    def reaches(self, recipe: Recipe) -> bool:
        """Whether this fault replaces code of `recipe`'s author: a fault in a step the
        recipe leaves to the correct one tests the harness's step, never the user's
        (a fault of settings alone, like huge_scale, runs through every step)."""
        return not self.swapped_steps or any(s in recipe.user_steps for s in self.swapped_steps)

    def applied_to(self, lora: LoRAConfig, recipe: Recipe = CORRECT) -> tuple[LoRAConfig, Recipe]:
        """The run this fault makes of (lora, recipe): its steps swapped in, its overrides set.

        The one way a fault is applied, on every path (run --inject-fault, selftest, pytest).
        """
        steps = {name: getattr(self.recipe, name) for name in self.swapped_steps}
        name = self.name if recipe is CORRECT else f"{recipe.name}+{self.name}"
        faulty = dataclasses.replace(
            recipe,
            name=name,
            user_steps=tuple(s for s in recipe.user_steps if s not in steps),
            fault_steps=tuple(steps),
            **steps,
        )
        return dataclasses.replace(lora, **self.lora_overrides), faulty


def _unfreeze_everything(model: nn.Module, lora: LoRAConfig) -> None:
    model.unfreeze()


def _hand_built_lora_after_freeze(model: nn.Module, lora: LoRAConfig) -> None:
    # The bug: a fresh LoRALinear's own `.linear` is created unfrozen, then the base weight
    # is copied into it; freeze() ran before, so nothing freezes the new module.
    for block in model.layers:
        for name, module in list(block.named_modules()):
            if isinstance(module, nn.Linear):
                out_dims, in_dims = module.weight.shape
                wrapped = LoRALinear(
                    in_dims, out_dims, r=lora.rank, scale=lora.scale, bias="bias" in module
                )
                wrapped.linear.update(module.parameters())
                block.update_modules(_nested(name, wrapped))


def _nested(dotted: str, value):
    tree = value
    for part in reversed(dotted.split(".")):
        tree = {part: tree}
    return tree


def _legacy_qv_keys(model: nn.Module, lora: LoRAConfig) -> None:
    # mlx-lm before v0.28.2 adapted only q_proj and v_proj when no keys were given.
    config = {**lora.lora_parameters(), "keys": ["self_attn.q_proj", "self_attn.v_proj"]}
    linear_to_lora_layers(model, lora.num_layers, config, use_dora=lora.use_dora)


def _mlx_lm_default_num_layers(model: nn.Module, lora: LoRAConfig) -> None:
    # mlx_lm.lora's --num-layers default (16) silently applied on a deeper request.
    partial = max(1, len(model.layers) // 2)
    linear_to_lora_layers(model, partial, lora.lora_parameters(), use_dora=lora.use_dora)


def _nonzero_lora_b(model: nn.Module, lora: LoRAConfig) -> None:
    convert_with_mlx_lm(model, lora)
    for _, module in model.named_modules():
        if isinstance(module, LoRALinear):
            module.lora_b = mx.random.normal(module.lora_b.shape) * 0.02


def _skip_init(optimizer, model: nn.Module) -> None:
    return None


def _init_on_all_parameters(optimizer, model: nn.Module) -> None:
    optimizer.init(model.parameters())


def _mx_value_and_grad(model: nn.Module, loss_fn):
    # Differentiates argument 0 — the whole module tree, frozen weights included.
    def loss_of_parameters(parameters, *args):
        model.update(parameters)
        return loss_fn(model, *args)

    value_and_grad = mx.value_and_grad(loss_of_parameters)

    def step(model_, *args):
        return value_and_grad(model_.parameters(), *args)

    return step


def _count_top_level(model: nn.Module) -> int:
    return len(model.trainable_parameters())


def _unfreeze_lora_b_only(model: nn.Module, lora: LoRAConfig) -> None:
    model.freeze()
    model.unfreeze(keys=["lora_b"], strict=False)


def _zero_token_loss(model, batch, lengths):
    # Every loss token masked out (e.g. prompt masking past the sequence end): 0/0 = NaN.
    empty = mx.stack([lengths[:, 1] + 1, lengths[:, 1]], axis=1)
    return default_loss(model, batch, empty)


def _loss_ignoring_lengths(model, batch, lengths):
    # The length mask forgotten: every padding position is scored as if it were text.
    width = mx.full(lengths[:, 1].shape, batch.shape[1], lengths.dtype)
    return default_loss(model, batch, mx.stack([lengths[:, 0], width], axis=1))


def _loss_mask_on_inputs(model, batch, lengths):
    # The mask laid on input positions, not targets: one step late, so each padded row
    # scores one more padding target after its end.
    inputs, targets = batch[:, :-1], batch[:, 1:]
    steps = mx.arange(targets.shape[1])
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    loss = nn.losses.cross_entropy(model(inputs), targets) * mask
    scored = mask.sum()
    return loss.astype(mx.float32).sum() / scored, scored


class _TextWithoutTerminator:
    """A hand-rolled dataset that encodes rows as they are: no EOS is appended to text rows,
    and chat rows lose the end-of-turn the chat template closes the last turn with."""

    def __init__(self, rows: list[dict], tokenizer):
        self.rows, self.tokenizer = rows, tokenizer

    def process(self, row: dict):
        if "text" in row:
            return self.tokenizer.encode(row["text"], add_special_tokens=False), 0
        messages = row.get("messages") or [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["completion"]},
        ]
        tokens = list(self.tokenizer.apply_chat_template(messages, return_dict=False))
        return _without_trailing_end(tokens, self.tokenizer), 0

    def __getitem__(self, index: int):
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)


def _without_trailing_end(tokens: list[int], tokenizer) -> list[int]:
    # Templates write "<|im_end|>" then a newline: a renderer that cuts the turn's end cuts both.
    # The stops are the ones training_examples_terminated looks for: eos and the template's
    # end-of-turn tokens (Qwen's <|im_end|> is not its eos).
    from lora_harness.text.generation import stop_token_ids

    stops = stop_token_ids(tokenizer, None)
    while tokens and (tokens[-1] in stops or not tokenizer.decode([tokens[-1]]).strip()):
        tokens.pop()
    return tokens


def _tokenize_without_terminator(rows: list[dict], tokenizer):
    from mlx_lm.tuner.datasets import CacheDataset

    return CacheDataset(_TextWithoutTerminator(rows, tokenizer))


def _negated_loss(model, batch, lengths):
    # Gradient ascent on the training data: the adapter learns to avoid the target voice.
    loss, tokens = default_loss(model, batch, lengths)
    return -loss, tokens


def _fuse_dropping_delta(model) -> None:
    # A fuse that keeps the wrapped base layer and forgets lora_a @ lora_b.
    from mlx.utils import tree_unflatten

    kept = [
        (name, module.linear) for name, module in model.named_modules() if hasattr(module, "fuse")
    ]
    model.update_modules(tree_unflatten(kept))


def _save_untrained_adapter(model, lora, folder):
    # The file is written from the initial weights (lora_b still zero): loads fine, does nothing.
    from lora_harness.lora.adapters import adapter_weights, save_adapter

    weights = {
        k: mx.zeros_like(v) if k.endswith("lora_b") else v
        for k, v in adapter_weights(model).items()
    }
    return save_adapter(model, lora, folder, weights=weights)


def _save_config_without_scale(model, lora, folder):
    # A hand-written adapter_config.json that forgets lora_parameters.scale: the tensors are
    # right, but mlx_lm.load (and mlx_lm.fuse) raise KeyError: 'scale' on it.
    import json
    from pathlib import Path

    from lora_harness.lora.adapters import save_adapter

    folder = save_adapter(model, lora, folder)
    path = Path(folder) / "adapter_config.json"
    config = json.loads(path.read_text())
    del config["lora_parameters"]["scale"]
    path.write_text(json.dumps(config, indent=4))
    return folder


def _fault(name, description, **steps) -> Fault:
    overrides = steps.pop("lora_overrides", {})
    recipe = dataclasses.replace(CORRECT, name=name, fault_steps=tuple(sorted(steps)), **steps)
    return Fault(name, description, recipe, overrides, tuple(sorted(steps)))


FAULTS = {
    f.name: f
    for f in [
        _fault(
            "unfreeze_without_keys",
            "model.unfreeze() without keys thaws every base weight",
            unfreeze=_unfreeze_everything,
        ),
        _fault(
            "hand_built_lora_after_freeze",
            "LoRALinear built by hand after freeze(): its .linear is trainable",
            convert=_hand_built_lora_after_freeze,
        ),
        _fault(
            "legacy_qv_keys",
            "only q_proj/v_proj adapted (mlx-lm's default before v0.28.2)",
            convert=_legacy_qv_keys,
        ),
        _fault(
            "partial_num_layers",
            "fewer blocks adapted than asked (mlx_lm.lora's --num-layers 16 default)",
            convert=_mlx_lm_default_num_layers,
        ),
        _fault(
            "nonzero_lora_b_init",
            "lora_b initialised non-zero: the adapter perturbs the model before training",
            convert=_nonzero_lora_b,
        ),
        _fault(
            "skip_optimizer_init",
            "optimizer.init() skipped (MLX creates state lazily: may have no effect)",
            init_optimizer=_skip_init,
        ),
        _fault(
            "optimizer_init_all_parameters",
            "optimizer.init(model.parameters()) keeps state for every base weight",
            init_optimizer=_init_on_all_parameters,
        ),
        _fault(
            "mx_value_and_grad",
            "mx.value_and_grad over model.parameters(): frozen weights get gradients and move",
            value_and_grad=_mx_value_and_grad,
            # With state initialised on the adapters only, Adam raises KeyError at once; the
            # silent version initialises on everything so the update goes through.
            init_optimizer=_init_on_all_parameters,
        ),
        _fault(
            "count_without_tree_flatten",
            "the trainer counts len(model.trainable_parameters()): the top level, not the arrays",
            count_trainable=_count_top_level,
        ),
        _fault(
            "lora_a_frozen",
            "unfreeze with too few keys: lora_a stays frozen and never learns",
            unfreeze=_unfreeze_lora_b_only,
        ),
        _fault(
            "zero_loss_tokens",
            "every loss token masked out: the loss is 0/0 = NaN",
            loss=_zero_token_loss,
        ),
        _fault(
            "huge_scale",
            "a huge LoRA scale blows the update up: the loss is NaN or frozen",
            lora_overrides={"scale": 1e30},
        ),
        _fault(
            "loss_scores_padding",
            "the loss mask ignores the row lengths: padding is trained on as if it were text",
            loss=_loss_ignoring_lengths,
        ),
        _fault(
            "loss_mask_on_inputs",
            "the loss mask is built on input positions, not targets: off by one position",
            loss=_loss_mask_on_inputs,
        ),
        _fault(
            "data_without_terminator",
            "training text tokenised without EOS: the model never learns to stop",
            tokenize=_tokenize_without_terminator,
        ),
        _fault(
            "destructive_full_model_lr",
            "the whole model trained at a destructive learning rate: generation collapses",
            unfreeze=_unfreeze_everything,
            lora_overrides={"learning_rate": 0.05},
        ),
        _fault(
            "loss_sign_flipped",
            "the loss is negated: training pushes away from the data and the voice is lost",
            loss=_negated_loss,
        ),
        _fault(
            "fuse_drops_delta",
            "the fuse keeps the base layer and drops lora_a @ lora_b (mlx-lm #1172's symptom)",
            fuse=_fuse_dropping_delta,
        ),
        _fault(
            "adapter_saved_not_applied",
            "the adapter file holds untrained weights: it loads without error and changes nothing",
            save=_save_untrained_adapter,
        ),
        _fault(
            "adapter_config_without_scale",
            "adapter_config.json lacks lora_parameters.scale: mlx_lm.load raises KeyError",
            save=_save_config_without_scale,
        ),
    ]
}


def _negated_preference_loss(model, tokens, spans, reference):
    from lora_harness.lora.dpo import dpo_loss

    loss, count = dpo_loss(model, tokens, spans, reference)
    return -loss, count


def _preference_loss_scoring_prompt(model, tokens, spans, reference):
    # The response spans widened to the whole prompt: the policy log-probs count prompt tokens.
    from lora_harness.lora.dpo import dpo_loss

    whole = mx.stack([mx.ones_like(spans[:, 0]), spans[:, 1]], axis=1)
    return dpo_loss(model, tokens, whole, reference)


# Faults of the DPO trainer (run with trainer_kind="dpo").
DPO_FAULTS = {
    f.name: f
    for f in [
        _fault(
            "dpo_reference_trained",
            "the base is trainable, so the 'reference' (base, adapter disabled) moves with the policy",
            unfreeze=_unfreeze_everything,
        ),
        _fault(
            "dpo_loss_sign_flipped",
            "the DPO loss is negated: training prefers the rejected answers",
            preference_loss=_negated_preference_loss,
        ),
        _fault(
            "dpo_loss_scores_prompt",
            "the DPO log-probs are summed over the prompt too, not only the response",
            preference_loss=_preference_loss_scoring_prompt,
        ),
    ]
}


def _average_on_rank_zero_only(grads):
    # Every rank joins the collective (so nobody blocks), but rank 1+ keeps its own gradient.
    from mlx.nn.utils import average_gradients
    from mlx.utils import tree_flatten, tree_map

    averaged = average_gradients(grads)
    if mx.distributed.init().rank() == 0:
        return averaged
    # mx.depends keeps the collective in the graph (MLX is lazy) while using the local gradient.
    leaves = [leaf for _, leaf in tree_flatten(averaged)]
    return tree_map(lambda own: mx.depends(own, leaves), grads)


def _die_on_rank_one(model, batch, lengths):
    import os

    if mx.distributed.init().rank() == 1:
        os._exit(9)  # a host that falls over mid-run
    return default_loss(model, batch, lengths)


def _hang_on_rank_one(model, batch, lengths):
    import time

    if mx.distributed.init().rank() == 1:
        time.sleep(3600)  # a host that stops answering without closing its sockets
    return default_loss(model, batch, lengths)


def _mlx_error_on_rank_one(optimizer, model: nn.Module) -> None:
    # A file every other host has but this one lacks: MLX itself raises, on this rank alone.
    if mx.distributed.init().rank() == 1:
        mx.load("/nonexistent/lora-harness/adapters.safetensors")
    CORRECT.init_optimizer(optimizer, model)


# Faults of data-parallel training (run under mlx.launch with --distributed).
DISTRIBUTED_FAULTS = {
    f.name: f
    for f in [
        _fault(
            "rank_skips_average",
            "one rank skips the gradient average: the ranks drift apart",
            average_gradients=_average_on_rank_zero_only,
        ),
        _fault(
            "rank_dies",
            "rank 1 exits during training: the others must not hang forever",
            loss=_die_on_rank_one,
        ),
        _fault(
            "rank_hangs",
            "rank 1 stops making progress: the watchdog must end the run",
            loss=_hang_on_rank_one,
        ),
        _fault(
            "rank_local_error",
            "rank 1 hits an MLX error of its own: it must say so, not blame a lost peer",
            init_optimizer=_mlx_error_on_rank_one,
        ),
    ]
}

ALL_FAULTS = {**FAULTS, **DPO_FAULTS, **DISTRIBUTED_FAULTS}
