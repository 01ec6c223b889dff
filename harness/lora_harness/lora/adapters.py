"""Adapter files as mlx-lm reads them: save, load through mlx_lm, fuse, and inspect."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_unflatten

from lora_harness.core import declared
from lora_harness.core.errors import InputError
from lora_harness.core.files import folder_mode
from lora_harness.core.validation import check, read_text
from lora_harness.lora.lora_config import LoRAConfig


def adapter_weights(model) -> dict[str, mx.array]:
    """What mlx-lm saves: every trainable array under its flattened name."""
    from mlx.utils import tree_flatten

    return dict(tree_flatten(model.trainable_parameters()))


def save_adapter(
    model, lora, folder: Path, extra: dict | None = None, weights: dict | None = None
) -> Path:
    """Write mlx-lm's adapter format: adapter_config.json + adapters.safetensors, atomically.

    Tensors first, config last: mlx-lm (and the doctor) treat the config as the sign that
    the folder is an adapter, so an interrupted save never looks like a complete one.
    """
    folder = Path(folder)
    config = {
        "fine_tune_type": lora.fine_tune_type,
        "num_layers": lora.num_layers,
        "lora_parameters": lora.lora_parameters(),
        "batch_size": lora.batch_size,
        "iters": lora.iters,
        "learning_rate": lora.learning_rate,
        "seed": lora.seed,
        **(extra or {}),
    }
    tensors = adapter_weights(model) if weights is None else weights
    if folder.exists():  # e.g. train's folder with metrics and checkpoints: replace file by file
        replace_file(folder / "adapters.safetensors", lambda p: save_tensors(p, tensors))
        replace_file(folder / "adapter_config.json", lambda p: p.write_text(_config_text(config)))
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        save_tensors(staging / "adapters.safetensors", tensors)
        (staging / "adapter_config.json").write_text(_config_text(config))
        staging.chmod(folder_mode())  # mkdtemp made it 0700; the rest follows the umask
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def save_tensors(path: Path, tensors: dict) -> None:
    """mx.save_safetensors, with a failed write raised as the OSError it is.

    MLX reports a full disk as RuntimeError("[write] Unable to write ..."): as such it would
    read as a crash of the harness, not as the machine's state it is."""
    try:
        mx.save_safetensors(str(path), tensors)
    except RuntimeError as error:
        if "write" not in str(error) and "open" not in str(error):
            raise
        folder = Path(path).parent
        full = folder.is_dir() and shutil.disk_usage(folder).free < 1024**2
        raise OSError(errno.ENOSPC if full else errno.EIO, str(error), str(path)) from None


def _config_text(config: dict) -> str:
    return json.dumps(config, indent=4, sort_keys=True)


def replace_file(path: Path, write) -> None:
    """Write through a temporary name in the same folder, then rename over `path`."""
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def fuse_with_mlx_lm(model, dequantize: bool = False) -> None:
    """What `mlx_lm.fuse` does: replace every LoRA module by its `.fuse()` result.

    With `dequantize` (mlx_lm.fuse --dequantize) a quantised base is merged into float
    weights instead of being re-quantised."""
    fused = [
        (name, module.fuse(dequantize=dequantize))
        for name, module in model.named_modules()
        if hasattr(module, "fuse")
    ]
    if fused:
        model.update_modules(tree_unflatten(fused))
    if dequantize:
        from mlx_lm.utils import dequantize_model

        dequantize_model(model)  # in place; mlx_lm.fuse --dequantize does the same


def fuse_exactly(model) -> dict[str, dict]:
    """mlx-lm's fuse with dequantize=True: base + adapter merged, nothing re-quantised.

    Returns, for each merged module whose base was quantised, that base's quantisation
    (group_size, bits, mode): what mlx-lm's default fuse re-quantises it with."""
    fused, quantized = [], {}
    for name, module in model.named_modules():
        if hasattr(module, "fuse"):
            fused.append((name, module.fuse(dequantize=True)))
            base = getattr(module, "linear", None)
            if hasattr(base, "bits"):
                mode = getattr(base, "mode", "affine")
                quantized[name] = {"group_size": base.group_size, "bits": base.bits, "mode": mode}
    if fused:
        model.update_modules(tree_unflatten(fused))
    return quantized


_DECLARED = declared.rules(LoRAConfig)
ADAPTER_RULES = {
    "num_layers": _DECLARED["num_layers"],
    **{f"lora_parameters.{k}": _DECLARED[k] for k in ("rank", "scale", "dropout", "keys")},
}
REWRITE = "rewrite it as mlx_lm.lora writes it, or train the adapter again"


def read_adapter_config(folder: Path) -> dict:
    """adapter_config.json, checked: lora_parameters with rank and scale of the right types."""
    path = Path(folder) / "adapter_config.json"
    if not Path(folder).is_dir():
        raise InputError(
            f"--adapter-path {folder} is not a folder; pass the folder mlx_lm.lora wrote"
        )
    if not path.exists():
        raise InputError(
            f"{path} is missing; an adapter folder needs adapter_config.json and adapters.safetensors"
        )
    text = read_text(path, "adapter config", REWRITE)
    try:
        config = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"{path} is not valid JSON; {REWRITE}")
    if not isinstance(config, dict) or not isinstance(config.get("lora_parameters"), dict):
        raise InputError(
            f"{path} has no lora_parameters mapping; it is not an mlx-lm LoRA adapter config ({REWRITE})"
        )
    parameters = config["lora_parameters"]
    for key in ("rank", "scale"):
        if key not in parameters:
            raise InputError(f"{path}: lora_parameters has no {key!r}; {REWRITE}")
    for name, rule in ADAPTER_RULES.items():
        section, _, key = name.rpartition(".")
        holder = parameters if section else config
        if holder.get(key) is not None:
            holder[key] = check(f"{name} in {path}", holder[key], rule)
    return config


def read_adapter_tensors(folder: Path) -> dict[str, mx.array]:
    path = Path(folder) / "adapters.safetensors"
    if not path.is_file():
        raise InputError(
            f"{path} is missing; train the adapter again or point --adapter-path at the right folder"
        )
    try:
        tensors = mx.load(str(path))
        mx.eval(tensors)
    except Exception as exc:  # mlx raises RuntimeError/ValueError variants for corrupt files
        raise InputError(
            f"{path} cannot be read, it is corrupt or truncated ({first_line(exc)}); "
            "train the adapter again or copy it anew"
        )
    if not isinstance(tensors, dict) or not tensors:
        raise InputError(f"{path} holds no tensors; train the adapter again")
    return tensors


def first_line(exc: Exception, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else exc.__class__.__name__
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


class AdapterRejected(Exception):
    """mlx_lm.load refused the adapter folder; checks report this as a failure, not a crash."""


def rejection_guard(measure):
    """Decorator for `measure`: an adapter mlx-lm refuses to load is a failed check."""
    from lora_harness.core.checking import Measurement

    def guarded(self, ctx):
        try:
            return measure(self, ctx)
        except AdapterRejected as rejected:
            return Measurement(None, None, {"rejected_by_mlx_lm": str(rejected)})

    return guarded


def rejected_message(measurement) -> str | None:
    reason = measurement.evidence.get("rejected_by_mlx_lm")
    return f"mlx_lm.load rejected the adapter: {reason}" if reason else None


@contextmanager
def adapter_disabled(model):
    """The base model's behaviour without a second copy: LoRA scale 0 (exact for LoRA)."""
    modules = [m for _, m in model.named_modules() if hasattr(m, "lora_b") and hasattr(m, "scale")]
    scales = [m.scale for m in modules]
    for module in modules:
        module.scale = 0.0
    try:
        yield model
    finally:
        for module, scale in zip(modules, scales, strict=True):
            module.scale = scale
