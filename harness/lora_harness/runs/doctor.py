"""Doctor an adapter trained elsewhere (mlx_lm.lora or this harness): no training, just checks.

The model is prepared exactly as the adapter config says (freeze, convert, unfreeze the
adapter keys), then the file's tensors are loaded where names and shapes fit; whatever
does not fit is reported by adapter_file_exact rather than crashing the run.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from lora_harness.core.checking import SkipCheck
from lora_harness.lora import adapters
from lora_harness.lora.adapters import adapter_disabled
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.runs import validate
from lora_harness.runs.context import RunContext
from lora_harness.runs.generation_part import GenerationPart
from lora_harness.runs.model_part import ModelPart

MLX_LM_DEFAULT_NUM_LAYERS = 16  # mlx_lm.lora's --num-layers when a config leaves it out
ADAPTER_FIELDS = ("fine_tune_type", "num_layers", "rank", "scale", "dropout", "keys")


def lora_from_adapter_config(config: dict, path: Path) -> LoRAConfig:
    """The LoRA settings an adapter was trained with; absent keys take mlx_lm.lora's defaults."""
    fields = validate.fields_from_mlx_lm(config, path, only=ADAPTER_FIELDS)  # each checked
    fields.setdefault("num_layers", MLX_LM_DEFAULT_NUM_LAYERS)
    return LoRAConfig(**{k: fields[k] for k in ADAPTER_FIELDS if k in fields})


class AdapterModelPart(ModelPart):
    """The model converted as the adapter config says, with the file's fitting tensors loaded."""

    def __init__(self, *args, adapter_files=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.adapter_files = adapter_files

    @cached_property
    def lora_model(self):
        model = super().lora_model
        expected = self.expectations.adapter_shapes()
        tensors = self.adapter_files.tensors.items()
        fitting = [(n, t) for n, t in tensors if expected.get(n) == tuple(t.shape)]
        model.load_weights(fitting, strict=False)
        return model


class AdapterGenerationPart(GenerationPart):
    """'Before' is the same model with the adapter disabled: there is no training run.

    The adapter learned its own data's voice, so it is scored only against references the
    user passes (--voice-references)."""

    needs_references = True
    adapter_config: dict | None = None  # set by DoctorContext

    @cached_property
    def init_generations(self):
        with adapter_disabled(self.model_part.lora_model):
            return self.generate()

    def trained_on_chat(self) -> bool:
        """From --data, else the data folder mlx_lm.lora records in adapter_config.json
        (this harness's adapters record none: its built-in rows are plain text)."""
        if self.model_part.data_dir:
            return super().trained_on_chat()
        data = (self.adapter_config or {}).get("data")
        first = _first_row(Path(data) / "train.jsonl") if isinstance(data, str) else None
        return first is not None and "messages" in first


def _first_row(path: Path) -> dict | None:
    import json

    try:
        with open(path) as handle:
            row = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) else None


class DoctorContext(RunContext):
    def __init__(self, source, adapter_path: Path, **kwargs):
        self.adapter_config = adapters.read_adapter_config(adapter_path)
        lora = lora_from_adapter_config(
            self.adapter_config, Path(adapter_path) / "adapter_config.json"
        )
        super().__init__(source, lora, adapter_path=adapter_path, **kwargs)
        self.model = AdapterModelPart(
            source,
            lora,
            recipe=self.model.recipe,
            pins=kwargs.get("pins"),
            data_dir=kwargs.get("data_dir"),
            adapter_files=self.adapter,
        )
        self.adapter.model_part = self.model
        self.generation = AdapterGenerationPart(self.model, self.generation.settings, lambda: None)
        self.generation.adapter_config = self.adapter_config

    @property
    def training(self):
        raise SkipCheck(
            "doctor: the adapter is already trained; there is no training run to inspect"
        )
