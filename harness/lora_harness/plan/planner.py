"""One prediction: a model, LoRA settings and a training shape, on this device's MLX."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import ModelSource
from lora_harness.plan import backend, memory, shape
from lora_harness.plan.memory import TrainingShape


@dataclass(frozen=True)
class Knobs:
    """Everything a change of advice may touch; a plan is a pure function of these."""

    lora: LoRAConfig
    run: TrainingShape
    quantize: shape.Quantization | None = None

    def replace(self, **changes) -> Knobs:
        lora_fields = {k: v for k, v in changes.items() if k in ("num_layers", "rank")}
        run_fields = {k: v for k, v in changes.items() if k in TrainingShape.__dataclass_fields__}
        return Knobs(
            lora=dataclasses.replace(self.lora, **lora_fields) if lora_fields else self.lora,
            run=dataclasses.replace(self.run, **run_fields) if run_fields else self.run,
            quantize=changes.get("quantize", self.quantize),
        )


def device_for(seq_length: int, dtype: str) -> memory.Device:
    return memory.Device(
        name=backend.name(),
        attention_keeps_scores=backend.attention_keeps_scores(seq_length, dtype),
        fused_cross_entropy=backend.fused_cross_entropy(),
    )


class Planner:
    """Predictions for one model, cached by knobs (advice re-runs many)."""

    def __init__(self, source: ModelSource):
        self.source = source
        self._shapes: dict = {}

    def shape(self, knobs: Knobs) -> shape.ModelShape:
        """The model read once per base format; other layer counts and ranks derived (LoRA)."""
        lora = knobs.lora
        if lora.use_dora:  # DoRA's magnitudes do not scale with the rank: read each
            key = (lora.num_layers, lora.rank, knobs.quantize)
            if key not in self._shapes:
                self._shapes[key] = self._read(lora, knobs.quantize)
            return self._shapes[key]
        if knobs.quantize not in self._shapes:
            self._shapes[knobs.quantize] = self._read(lora, knobs.quantize)
        return self._shapes[knobs.quantize].with_lora(lora.num_layers, lora.rank)

    def _read(self, lora, quantize):
        try:
            return shape.read(self.source, lora, quantize=quantize)
        except ValueError as error:
            if quantize is None:
                raise
            from lora_harness.core.errors import InputError

            reason = (str(error).strip().splitlines() or ["ValueError"])[0]
            raise InputError(
                f"{self.source.spec} cannot be quantised to {quantize.bits} bits with group "
                f"size {quantize.group_size} ({reason[:200]})"
            )

    def predict(self, knobs: Knobs) -> tuple[memory.Prediction, memory.Device]:
        model = self.shape(knobs)
        device = device_for(knobs.run.seq_length, model.dtype)
        return memory.predict(model, knobs.run, device), device
