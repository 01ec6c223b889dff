"""The run options, declared once for every front end (the CLI now, the pytest plugin later).

Flag names follow `mlx_lm.lora` where it has them (--num-layers, --fine-tune-type,
--batch-size, --iters, --learning-rate, --seed, --data, -c/--config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lora_harness.core.errors import InputError
from lora_harness.lora.lora_config import FINE_TUNE_TYPES, LoRAConfig, load_yaml_config, parse_keys
from lora_harness.models.sources import DEFAULT_MODEL


@dataclass(frozen=True)
class Option:
    name: str  # long flag without dashes, e.g. "num-layers"
    help: str
    type: Any = str
    short: str | None = None
    choices: tuple | None = None
    action: str | None = None
    metavar: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


MODEL_OPTIONS = [
    Option(
        "model",
        f"mlx-lm model folder, hub id, fixture:tiny or shape:<name|config.json> "
        f"(default {DEFAULT_MODEL})",
        metavar="M",
    ),
    Option(
        "data", "folder with train.jsonl in mlx-lm format (default: built-in corpus)", metavar="DIR"
    ),
    Option(
        "distributed",
        "data-parallel across the ranks of mlx.launch (ring, MPI or NCCL); suite distributed",
        action="store_true",
    ),
    Option(
        "distributed-timeout",
        "seconds without a finished step before a rank gives up on its peers (default 600)",
        type=float,
    ),
    Option(
        "inject-fault",
        "run with a known fault from harness/faults.py (to watch a check catch it)",
        metavar="NAME",
    ),
    Option(
        "trainer",
        "sft (default), or dpo: train.jsonl rows {prompt, chosen, rejected}; suite dpo",
        choices=("sft", "dpo"),
    ),
]

LORA_OPTIONS = [
    Option(
        "config", "mlx_lm.lora-style YAML config; flags override it", short="-c", metavar="YAML"
    ),
    Option("fine-tune-type", "lora or dora (default lora)", choices=FINE_TUNE_TYPES),
    Option("num-layers", "blocks to adapt from the last; -1 = all (default -1)", type=int),
    Option("rank", "LoRA rank (default 8)", type=int),
    Option("scale", "absolute LoRA scale, mlx-lm's 'scale' (default 20.0)", type=float),
    Option("dropout", "LoRA dropout (default 0.0)", type=float),
    Option(
        "keys",
        "comma-separated block-relative keys, e.g. self_attn.q_proj,self_attn.v_proj "
        "(default: every Linear of a block)",
        type=parse_keys,
    ),
    Option("batch-size", "minibatch size (default 4)", type=int),
    Option("iters", "training steps of the check run, >= 2 (default 8)", type=int),
    Option("learning-rate", "Adam learning rate (default 1e-3)", type=float),
    Option("seed", "seed for LoRA init and batching (default 0)", type=int),
    Option("max-seq-length", "maximum tokens per example (default 256)", type=int),
]

EXPECT_OPTIONS = [
    Option(
        "expect",
        "pin an expectation, NAME=VALUE (repeatable), e.g. trainable_arrays=392",
        action="append",
        metavar="NAME=VALUE",
    ),
]

GENERATION_OPTIONS = [
    Option(
        "prompts",
        "prompts for the generation checks: .txt (one per line) or .jsonl "
        "(default: built-in neutral prompts)",
        metavar="PATH",
    ),
    Option(
        "voice-references",
        "texts in the target voice: .txt or .jsonl "
        "(default: built-in corpus in the training voice)",
        metavar="PATH",
    ),
    Option(
        "voice-scorer",
        "voice scorer as module:callable(generations, references) -> [0, 1] "
        "(default lora_harness.text.voice:stylometric_score)",
        metavar="MOD:FN",
    ),
    Option(
        "voice-tolerance",
        "how far below its baseline the voice score may fall (default 0.05)",
        type=float,
    ),
    Option(
        "baseline",
        "baseline file to hold the voice score against (see --save-baseline)",
        metavar="FILE",
    ),
]

RUN_OPTIONS = MODEL_OPTIONS + LORA_OPTIONS + EXPECT_OPTIONS + GENERATION_OPTIONS


def generation_settings_from(values: dict):
    from lora_harness.text.generation import GenerationSettings

    settings = GenerationSettings(
        prompts_path=values.get("prompts"),
        references_path=values.get("voice_references"),
        scorer=values.get("voice_scorer"),
        baseline_path=values.get("baseline"),
    )
    if values.get("voice_tolerance") is not None:
        if values["voice_tolerance"] < 0:
            raise InputError("--voice-tolerance must be >= 0")
        settings.tolerance = values["voice_tolerance"]
    return settings


def _argument(option: Option, dest: str) -> dict:
    kwargs = {"dest": dest, "help": option.help, "default": None}
    if option.action:
        kwargs["action"] = option.action
    else:
        kwargs.update(type=option.type, metavar=option.metavar)
        if option.choices:
            kwargs["choices"] = option.choices
    return kwargs


def add_to_argparse(parser, options: list[Option]) -> None:
    for option in options:
        flags = [f"--{option.name}"] + ([option.short] if option.short else [])
        parser.add_argument(*flags, **_argument(option, option.dest))


PYTEST_PREFIX = "lora-"


def add_to_pytest(group, options: list[Option]) -> None:
    """The same options for the pytest plugin, as --lora-<name> (pytest owns -c)."""
    for option in options:
        group.addoption(
            f"--{PYTEST_PREFIX}{option.name}", **_argument(option, f"lora_{option.dest}")
        )


def values_from_pytest(config, options: list[Option]) -> dict:
    return {option.dest: config.getoption(f"lora_{option.dest}") for option in options}


def lora_config_from(values: dict) -> LoRAConfig:
    """Defaults < YAML config < explicit flags; `values` maps option dests to parsed values."""
    merged: dict = {}
    if values.get("config"):
        merged.update(load_yaml_config(values["config"]))
    for name in LoRAConfig.__dataclass_fields__:
        if values.get(name) is not None:
            merged[name] = values[name]
    if isinstance(merged.get("keys"), str):
        merged["keys"] = parse_keys(merged["keys"])
    config = LoRAConfig(**{name: _coerce(name, value) for name, value in merged.items()})
    config.validate()
    return config


def _coerce(name: str, value):
    # YAML 1.1 reads "1e-5" as a string; cast numbers to the field's type.
    default = LoRAConfig.__dataclass_fields__[name].default
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise InputError(f"{name.replace('_', '-')} must be a number, got {value!r}")
    return value
