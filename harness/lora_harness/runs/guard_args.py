"""mlx_lm.lora's own flags and YAML, read exactly as `mlx_lm.lora.main` reads them."""

from __future__ import annotations

import types
from pathlib import Path

from lora_harness.core.errors import InputError


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


def _validate(args: dict) -> None:
    if args["fine_tune_type"] not in ("lora", "dora"):
        raise InputError(
            f"--fine-tune-type {args['fine_tune_type']}: the guard checks LoRA/DoRA runs; "
            "a full fine-tune has no frozen base to guard"
        )
    for name in ("iters", "batch_size", "save_every", "steps_per_report", "steps_per_eval"):
        if not isinstance(args[name], int) or args[name] < 1:
            raise InputError(f"--{name.replace('_', '-')} must be a whole number >= 1")
    for name in ("val_batches", "test_batches"):  # mlx-lm: -1 means the whole set
        if not isinstance(args[name], int) or (args[name] < 1 and args[name] != -1):
            raise InputError(
                f"--{name.replace('_', '-')} must be a whole number >= 1, or -1 for the whole set"
            )
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


def lora_config(args):
    """The harness's LoRAConfig of mlx_lm.lora's args (what the expectations derive from)."""
    from lora_harness.lora.lora_config import LoRAConfig

    params = dict(args.lora_parameters or {})
    return LoRAConfig(
        fine_tune_type=args.fine_tune_type,
        num_layers=args.num_layers,
        rank=int(params.get("rank", 8)),
        scale=float(params.get("scale", 20.0)),
        dropout=float(params.get("dropout", 0.0)),
        keys=params.get("keys"),
        batch_size=args.batch_size,
        iters=args.iters,
        learning_rate=float(args.learning_rate),
        seed=args.seed,
        max_seq_length=args.max_seq_length,
        mask_prompt=bool(args.mask_prompt),
    )
