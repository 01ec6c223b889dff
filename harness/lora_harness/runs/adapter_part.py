"""The run context's adapter part: the adapter as files, read back through mlx-lm.

Written once after training with the recipe's own `save` (or given, for the doctor),
then loaded by `mlx_lm.load(..., adapter_path=...)` and fused with the recipe's `fuse`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import mlx.core as mx

from lora_harness.core import numerics
from lora_harness.lora.adapters import AdapterRejected, fuse_exactly, read_adapter_tensors


class AdapterFiles:
    def __init__(self, model_part, ensure_trained: Callable, given: Path | None = None):
        self.model_part = model_part
        self._ensure_trained = ensure_trained
        self.given = Path(given) if given is not None else None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @cached_property
    def folder(self) -> Path:
        if self.given is not None:
            return self.given
        self._ensure_trained()
        # Removed with the context; the run folder copies these files instead of saving again.
        self._tmp = tempfile.TemporaryDirectory(prefix="lora-harness-adapter-")
        part = self.model_part
        return part.recipe.save(part.lora_model, part.lora, Path(self._tmp.name))

    @property
    def written(self) -> bool:
        return "folder" in vars(self)  # cached_property stores its value on the instance

    @cached_property
    def tensors(self) -> dict[str, mx.array]:
        return read_adapter_tensors(self.folder)

    def load_with_adapter(self):
        import mlx_lm
        import mlx_lm.utils

        source = self.model_part.source
        # Outside the try: training (or the recipe's save) failing is not mlx-lm rejecting
        # the files, and must not read as such (their errors are often ValueErrors too).
        folder = str(self.folder)
        base = source.load()[0] if source.random_weights else None
        try:
            if base is not None:  # no folder to load: the seed rebuilds the same weights
                model = mlx_lm.utils.load_adapters(base, folder)
                model.eval()
            else:
                model, _ = mlx_lm.load(str(source.path), adapter_path=folder)
        except ValueError as exc:  # mlx-lm rejects unknown tensor names and wrong shapes
            raise AdapterRejected(str(exc).splitlines()[0]) from exc
        except (KeyError, AttributeError) as exc:  # a key adapter_config.json lacks
            said = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
            raise AdapterRejected(
                f"{exc.__class__.__name__}: {said} (adapter_config.json lacks a key mlx-lm reads)"
            ) from exc
        return model

    @cached_property
    def loaded_logits(self):
        """Probe logits of the base loaded by mlx-lm with this adapter."""
        return self.model_part.logits(self.load_with_adapter())

    @cached_property
    def fused_logits(self):
        """Probe logits of the same, after the recipe's fuse."""
        model = self.load_with_adapter()
        self.model_part.recipe.fuse(model)
        self.fused_precision = numerics.precision_of(model)
        return self.model_part.logits(model)

    @cached_property
    def fuse_references(self):
        """(exact, rounded): base + adapter merged without re-quantising, and that merge
        quantised as the fused model is (None when the fused model is not quantised).

        `exact` against the adapter's logits is the noise floor of merging at all; `rounded`
        against `exact` is what re-quantising the merged weights alone moves the logits by.
        """
        self.fused_logits  # noqa: B018  (sets fused_precision)
        model = self.load_with_adapter()
        merged = fuse_exactly(model)
        exact = self.model_part.logits(model)
        target = self.fused_precision
        if not target.quantized or not merged:
            return exact, None
        import mlx.nn as nn

        # Each merged layer rounded with its own base's quantisation (mixed-bit models too).
        nn.quantize(model, class_predicate=lambda name, module: merged.get(name, False))
        return exact, self.model_part.logits(model)
