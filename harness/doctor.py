"""Doctor an adapter trained elsewhere (mlx_lm.lora or this harness): no training, just checks.

The model is prepared exactly as the adapter config says (freeze, convert, unfreeze the
adapter keys), then the file's tensors are loaded where names and shapes fit; whatever
does not fit is reported by adapter_file_exact rather than crashing the run.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from harness import adapters, generation, trainer
from harness.adapters import adapter_disabled
from harness.checking import SkipCheck
from harness.context import RunContext
from harness.errors import InputError
from harness.lora_config import LoRAConfig

DOCTOR_CHECKS = [
    "adapter_config_consistent",
    "adapter_tensors_finite",
    "lora_layer_count",
    "trainable_array_count",
    "trainable_parameter_count",
    "adapter_file_exact",
    "adapter_applied",
    "fuse_equivalence",
    "no_endoftext_spam",
    "voice_score_baseline",
]


def lora_from_adapter_config(config: dict, path: Path) -> LoRAConfig:
    parameters = config.get("lora_parameters") or {}
    fine_tune_type = config.get("fine_tune_type", "lora")
    if fine_tune_type not in ("lora", "dora"):
        raise InputError(f"{path}: fine_tune_type {fine_tune_type!r} has no LoRA adapter to doctor")
    try:
        lora = LoRAConfig(
            fine_tune_type=fine_tune_type,
            num_layers=int(config.get("num_layers", 16)),
            rank=int(parameters.get("rank", 8)),
            scale=float(parameters.get("scale", 20.0)),
            dropout=float(parameters.get("dropout", 0.0)),
            keys=parameters.get("keys"),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: lora_parameters hold a value of the wrong type ({exc})")
    lora.validate()
    return lora


class DoctorContext(RunContext):
    def __init__(self, source, adapter_path: Path, **kwargs):
        self.adapter_config = adapters.read_adapter_config(adapter_path)
        lora = lora_from_adapter_config(
            self.adapter_config, Path(adapter_path) / "adapter_config.json"
        )
        super().__init__(source, lora, **kwargs)
        self.adapter_path = Path(adapter_path)

    @cached_property
    def lora_model(self):
        self.expectations  # noqa: B018  (derive from the unconverted model first)
        self.base_logits  # noqa: B018
        model = trainer.prepare_lora_model(self._loaded[0], self.lora, self.recipe)
        expected = self.expectations.adapter_shapes()
        fitting = [
            (n, t) for n, t in self.adapter_tensors.items() if expected.get(n) == tuple(t.shape)
        ]
        model.load_weights(fitting, strict=False)
        return model

    @property
    def training(self):
        raise SkipCheck(
            "doctor: the adapter is already trained; there is no training run to inspect"
        )

    @cached_property
    def generations(self) -> list[generation.Generation]:
        return self.generate()

    @cached_property
    def init_generations(self) -> list[generation.Generation]:
        with adapter_disabled(self.lora_model):
            return self.generate()
