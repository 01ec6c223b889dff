"""The validation layer every front end passes through before any work starts.

The CLI, the pytest plugin (--lora-<name>) and a YAML config (-c) hand their values here
by option dest; `spell` turns a dest back into what the user typed, so the one-line error
names their flag or key. Nothing is loaded or trained until these checks pass.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lora_harness.core import declared
from lora_harness.core.errors import InputError
from lora_harness.core.validation import Rule, check, check_keys, read_text
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs import options

Spell = Callable[[str], str]

# Option dest -> which kind of path it must name.
PATHS = {
    "config": "file",
    "data": "dir",
    "prompts": "file",
    "voice_references": "file",
    "baseline": "file",
    "save_baseline": "new-file",
    "history": "dir-or-new",
    "out": "dir-or-new",
    "json": "new-file",  # "-" (stdout) is skipped
    "html": "new-file",
    "junit": "new-file",
    "screenshot": "new-file",
}


def cli_flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def pytest_flag(dest: str) -> str:
    return "--lora-" + dest.replace("_", "-")


def check_options(values: dict, spell: Spell = cli_flag) -> None:
    """Types, ranges, finiteness and paths of every option value that was given."""
    for dest, rule in options.RULES.items():
        if values.get(dest) is not None:
            check(spell(dest), values[dest], rule)
    for dest, kind in PATHS.items():
        if values.get(dest) is not None and values[dest] != "-":
            check_path(spell(dest), values[dest], kind, values, spell)
    check_contents(values, spell)


def check_contents(values: dict, spell: Spell = cli_flag) -> None:
    """Read the small files the options name now, so a bad row fails before a model loads."""
    from lora_harness.runs import baselines
    from lora_harness.text import data, voice

    if values.get("data") is not None:
        data.load_rows(values["data"], kind="dpo" if values.get("trainer") == "dpo" else "sft")
    for dest in ("prompts", "voice_references"):
        if values.get(dest) is not None:
            data.read_texts(values[dest], spell(dest))
    if values.get("voice_scorer") is not None:
        voice.load_scorer(values["voice_scorer"])
    for dest in ("baseline", "save_baseline"):  # a bad stored bar fails now, not after training
        if values.get(dest) is not None and Path(values[dest]).expanduser().is_file():
            baselines.read(Path(values[dest]).expanduser())


def check_path(name: str, value, kind: str, values: dict, spell: Spell) -> None:
    if not str(value).strip() or "\x00" in str(value):
        raise InputError(f"{name} {str(value)!r} is not a usable path; pass a file or folder name")
    path = Path(str(value)).expanduser()
    if kind == "file":
        if name == spell("baseline") and _same(value, values.get("save_baseline")):
            return  # the first run of --baseline F --save-baseline F creates F
        if not path.exists():
            raise InputError(
                f"{name} {value} is not a file: it does not exist; pass an existing file"
            )
        if not path.is_file():
            raise InputError(f"{name} {value} is a folder; pass a file")
    elif kind == "dir":
        if not path.exists():
            raise InputError(
                f"{name} {value} is not a folder: it does not exist; pass an existing folder"
            )
        if not path.is_dir():
            raise InputError(f"{name} {value} is a file; pass a folder")
    elif kind == "new-file":
        if path.is_dir():
            raise InputError(f"{name} {value} is a folder; pass a file path such as baseline.json")
        _creatable(name, value, path.parent)
    elif kind == "dir-or-new":
        if path.exists() and not path.is_dir():
            raise InputError(f"{name} {value} is a file; pass a folder (made if missing)")
        _creatable(name, value, path)


def _same(a, b) -> bool:
    return (
        b is not None and Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()
    )


def _creatable(name: str, value, path: Path) -> None:
    """Fail now, not after the run, when `path` cannot be made: a file sits where a folder must."""
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(
                    f"{name} {value}: {parent} is a file, so nothing can be written there"
                )
            return


def check_run(options, spell: Spell = cli_flag) -> None:
    """Combinations `run` would accept and then ignore: each one is an error instead."""
    suite, trainer = options.suite, options.trainer or "sft"
    if suite == "dpo" and trainer != "dpo":
        raise InputError(
            f"{spell('suite')} dpo checks a DPO run; add {spell('trainer')} dpo "
            "(its checks would all be skipped under SFT)"
        )
    if suite == "distributed" and not options.distributed:
        raise InputError(
            f"{spell('suite')} distributed needs {spell('distributed')} under mlx.launch "
            "(its checks would all be skipped in one process)"
        )
    if options.save_baseline is not None and (
        suite not in (None, "gate") or trainer == "dpo" or options.distributed
    ):
        raise InputError(
            f"{spell('save_baseline')} stores the voice score, which only the gate suite "
            f"measures; run the gate suite (SFT, one process) or drop {spell('save_baseline')}"
        )


# --- YAML configs (-c) ---------------------------------------------------------------------

LORA_PARAMETER_KEYS = ("rank", "scale", "dropout", "keys")
# mlx_lm.lora keys that configure its own long training, not the harness's check run:
# accepted so a user's training config can be passed as it is.
MLX_LM_ONLY_KEYS = (
    "model", "train", "optimizer", "optimizer_config", "data", "val_batches",
    "steps_per_report", "steps_per_eval", "resume_adapter_file", "adapter_path", "save_every",
    "test", "test_batches", "config", "grad_checkpoint",
    "clear_cache_threshold", "lr_schedule", "report_to", "project_name",
    "trust_remote_code", "wandb",
)  # fmt: skip


def read_config(path) -> dict:
    """An mlx_lm.lora-style YAML config as LoRAConfig values; unknown keys and bad values fail."""
    import yaml

    text = read_text(path, "config file", "pass an mlx_lm.lora-style YAML file to -c")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise InputError(f"config file {path} is not valid YAML{where}; fix it")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"config file {path} must hold a mapping of key: value, e.g. rank: 8")
    return fields_from_mlx_lm(raw, path, also_allowed=MLX_LM_ONLY_KEYS)


def fields_from_mlx_lm(raw: dict, path, also_allowed=None, only=None) -> dict:
    """LoRAConfig values from an mlx-lm mapping: a -c YAML config, or an adapter_config.json.

    Top-level names as they are, `lora_parameters {rank, scale, dropout, keys}` unnested, each
    value checked. With `also_allowed`, any other top-level key is an error (a YAML config);
    without, other keys pass (mlx_lm.lora dumps all its arguments into adapter_config.json).
    `only`: the fields to read; an adapter's own training run (its iters, say) is not ours.
    """
    fields = list(only or declared.declarations(LoRAConfig))  # rank etc. also at the top
    if also_allowed is not None:
        check_keys(raw, [*fields, "lora_parameters", *also_allowed], f"config file {path}")
    values = {k: _field(k, v, f"{k} in {path}") for k, v in raw.items() if k in fields}
    values.update(_lora_parameters(raw.get("lora_parameters"), path))
    return values


def _lora_parameters(section, path) -> dict:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise InputError(
            f"lora_parameters in {path} must be a mapping, e.g. {{rank: 8, scale: 20.0}}"
        )
    if "alpha" in section and "scale" not in section:
        raise InputError(
            f"{path}: lora_parameters has 'alpha' but mlx-lm uses an absolute 'scale'; rename it"
        )
    check_keys(section, LORA_PARAMETER_KEYS, f"lora_parameters in {path}")
    return {k: _field(k, v, f"lora_parameters.{k} in {path}") for k, v in section.items()}


def _field(key: str, value, name: str):
    return declared.check_value(LoRAConfig, key, value, name)


def argtype(rule: Rule):
    """An argparse `type=` that applies `rule`, for flags that are not run options."""
    import argparse

    def parse(text: str):
        try:
            return check("value", text, rule, text_numbers=True)
        except InputError as error:
            raise argparse.ArgumentTypeError(str(error).replace("value must", "must", 1))

    parse.__name__ = KIND_NAMES.get(rule.kind, "value")
    return parse


KIND_NAMES = {int: "integer", float: "number"}


def check_forwarded(argv: list[str], command: str) -> None:
    """Values after `--` of a remote command, checked before any host is contacted.

    Only types and ranges: paths name files on the hosts, which are checked there.
    """
    import argparse

    class Raising(argparse.ArgumentParser):
        def error(self, message: str):
            raise InputError(f"after --, for lora-harness {command} on the hosts: {message}")

    parser = Raising(prog=f"lora-harness {command}", add_help=False)
    options.add_to_argparse(parser, options.FORWARDED.get(command, options.PLAN_OPTIONS))
    argv = argv[1:] if argv[:1] == ["--"] else argv  # as the controller forwards them
    values = vars(parser.parse_known_args(argv)[0])
    for dest, rule in options.RULES.items():
        if values.get(dest) is not None:
            check(f"{cli_flag(dest)} (after --)", values[dest], rule)
