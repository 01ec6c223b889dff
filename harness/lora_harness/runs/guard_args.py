"""mlx_lm.lora's own flags and YAML, read exactly as `mlx_lm.lora.main` reads them."""

from __future__ import annotations

import types
from pathlib import Path

from lora_harness.core import declared
from lora_harness.core.errors import InputError
from lora_harness.core.validation import Rule, check
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs.validate import cli_flag


def mlx_lm_parser():
    """mlx_lm.lora's parser (its flags, help and types), for the guard's parser to inherit."""
    from mlx_lm import lora

    return lora.build_parser()


def mlx_lm_dests() -> set[str]:
    return {a.dest for a in mlx_lm_parser()._actions if a.dest != "help"}


def namespace(flags: dict) -> types.SimpleNamespace:
    """Flags over the -c YAML over mlx-lm's CONFIG_DEFAULTS, as `mlx_lm.lora.main` merges them."""
    import yaml
    from mlx_lm import lora

    args = {k: v for k, v in flags.items() if k in mlx_lm_dests()}
    if args.get("config"):
        path = Path(args["config"]).expanduser()
        if not path.is_file():
            raise InputError(f"-c {path}: no such file; pass mlx_lm.lora's YAML config")
        try:
            config = yaml.load(path.read_text(), lora.yaml_loader)
        except yaml.YAMLError as error:
            raise InputError(f"-c {path} is not YAML: {str(error).splitlines()[0]}")
        if not isinstance(config, dict):
            raise InputError(f"-c {path} must hold a mapping of mlx_lm.lora options")
        for key, value in config.items():
            if args.get(key) is None:
                args[key] = value
    for key, value in lora.CONFIG_DEFAULTS.items():
        if args.get(key) is None:
            args[key] = value
    args["train"] = True
    _validate(args)
    return types.SimpleNamespace(**args)


# mlx_lm.lora's own options that the harness's run has not: mlx-lm divides by the first
# three (so 0 fails mid-run there), and reads -1 batches as the whole set.
MLX_LM_RULES = {
    "save_every": Rule(int, minimum=1),
    "steps_per_report": Rule(int, minimum=1),
    "steps_per_eval": Rule(int, minimum=1),
    "val_batches": Rule(int, minimum=1, also=(-1,), hint="-1 for the whole set"),
    "test_batches": Rule(int, minimum=1, also=(-1,), hint="-1 for the whole set"),
}
LORA_PARAMETERS = ("rank", "scale", "dropout", "keys")


def _validate(args: dict) -> None:
    if args["fine_tune_type"] not in declared.rules(LoRAConfig)["fine_tune_type"].choices:
        raise InputError(
            f"--fine-tune-type {args['fine_tune_type']}: the guard checks LoRA/DoRA runs; "
            "a full fine-tune has no frozen base to guard"
        )
    for name, rule in MLX_LM_RULES.items():
        check(cli_flag(name), args[name], rule)
    # The harness's bounds, as every command's; mlx-lm then gets the values as checked.
    lora = lora_config(types.SimpleNamespace(**args))
    args.update({k: getattr(lora, k) for k in args if k in declared.declarations(LoRAConfig)})
    args["lora_parameters"] = {**args["lora_parameters"], **lora.lora_parameters()}
    from lora_harness.models.sources import resolve

    source = resolve(str(args["model"]))  # the same errors as `run` for a bad --model
    if source.path is None:
        raise InputError(
            f"--model {args['model']}: the guard trains a model folder with weights "
            "(a local folder, a hub id or fixture:tiny), not a shape-only or random model"
        )
    args["model"] = str(source.path)
    if args.get("resume_adapter_file") is not None:
        args["resume_adapter_file"] = str(_resume_file(args["resume_adapter_file"]))
    data = Path(str(args["data"])).expanduser()
    if not (data / "train.jsonl").is_file():
        raise InputError(
            f"--data {args['data']}: no train.jsonl there; the guard reads a local folder "
            "with train.jsonl and valid.jsonl, as mlx_lm.lora does"
        )


def _resume_file(value) -> Path:
    """--resume-adapter-file read before any model loads: a missing, truncated or corrupt
    checkpoint (a kill or a full disk mid-save) is bad input, and a FIFO is never opened."""
    import mlx.core as mx

    from lora_harness.lora.adapters import first_line

    flag = "--resume-adapter-file"
    path = Path(str(value)).expanduser()
    if not path.is_file():  # a FIFO or a device would block the load forever
        what = "is not a regular file" if path.exists() else "does not exist"
        raise InputError(f"{flag} {path} {what}; pass an adapters.safetensors checkpoint")
    try:
        tensors = mx.load(str(path))
        mx.eval(tensors)
    except Exception as exc:  # mlx raises RuntimeError/ValueError variants for corrupt files
        raise InputError(
            f"{flag} {path} cannot be read, it is corrupt or truncated ({first_line(exc)}); "
            "pass a checkpoint that mlx_lm.lora or lora-harness wrote"
        )
    if not isinstance(tensors, dict) or not tensors:
        raise InputError(f"{flag} {path} holds no tensors; pass an adapter checkpoint")
    return path


def lora_config(args) -> LoRAConfig:
    """The harness's LoRAConfig of mlx_lm.lora's args (what the expectations derive from),
    each value checked by LoRAConfig's declarations, named as the guard's user wrote it."""
    params = args.lora_parameters or {}
    if not isinstance(params, dict):
        raise InputError("lora_parameters must be a mapping, e.g. {rank: 8, scale: 20.0}")
    fields = set(declared.declarations(LoRAConfig)) - set(LORA_PARAMETERS)
    values = {k: getattr(args, k) for k in fields if getattr(args, k, None) is not None}
    values.update({k: params[k] for k in LORA_PARAMETERS if k in params})
    return LoRAConfig.checked(values, _spelt)


def _spelt(name: str) -> str:
    return f"lora_parameters.{name}" if name in LORA_PARAMETERS else cli_flag(name)
