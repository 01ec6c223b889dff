"""adapters.safetensors holds exactly the expected LoRA tensors, with the right shapes and
floating-point dtypes."""

import mlx.core as mx

from lora_harness.core import keysets
from lora_harness.core.checking import Check, Measurement, register


@register
class AdapterFileExact(Check):
    name = "adapter_file_exact"
    summary = (
        "the adapter file holds exactly the expected LoRA tensor names, shapes and float dtypes, "
        "no base weights"
    )
    symptom = (
        "An adapter file with base weights in it (the whole model trained), missing tensors "
        "(too few layers adapted), wrong shapes (rank or keys differ from the config) or "
        "integer tensors where LoRA needs floats."
    )
    remedy = (
        "Save only model.trainable_parameters() after the correct recipe; make adapter_config.json "
        "match the rank, keys and num_layers the tensors were trained with."
    )
    requires = ("weights",)
    catches = (
        "unfreeze_without_keys",
        "hand_built_lora_after_freeze",
        "legacy_qv_keys",
        "partial_num_layers",
        "lora_a_frozen",
        "destructive_full_model_lr",
    )

    def measure(self, ctx) -> Measurement:
        tensors = ctx.adapter.tensors
        expected_shapes = ctx.model.expectations.adapter_shapes()
        measurement = keysets.compare(set(tensors), set(expected_shapes))
        wrong = sorted(
            n
            for n in set(tensors) & set(expected_shapes)
            if tuple(tensors[n].shape) != expected_shapes[n]
        )
        # An integer lora_a loads and even runs (promoted in the matmul) but cannot be trained.
        not_float = sorted(n for n, t in tensors.items() if not mx.issubdtype(t.dtype, mx.floating))
        measurement.observed += f", {len(wrong)} wrong shapes, {len(not_float)} not floating point"
        measurement.expected += ", 0 wrong shapes, 0 not floating point"
        measurement.evidence.update(
            wrong_dtypes=[f"{n}: {tensors[n].dtype}" for n in not_float[:5]],
            wrong_dtype_count=len(not_float),
            wrong_shapes=[
                f"{n}: {tuple(tensors[n].shape)} != {expected_shapes[n]}" for n in wrong[:5]
            ],
            wrong_shape_count=len(wrong),
        )
        return measurement

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        out_of_place = ("extra_count", "missing_count", "wrong_shape_count", "wrong_dtype_count")
        if sum(ev[key] for key in out_of_place) == 0:
            return "pass", f"{ev['observed_count']} tensors, exactly the expected names and shapes"
        parts = []
        if ev["extra_count"] or ev["missing_count"]:
            names = keysets.judge(measurement, "", "unexpected tensors", "missing tensors")[1]
            parts.append(names.removeprefix(": "))
        if ev["wrong_shape_count"]:
            parts.append(f"{ev['wrong_shape_count']} wrong shapes (e.g. {ev['wrong_shapes'][0]})")
        if ev["wrong_dtype_count"]:
            parts.append(
                f"{ev['wrong_dtype_count']} tensors not floating point (e.g. {ev['wrong_dtypes'][0]})"
            )
        return "fail", "adapter file: " + "; ".join(parts)
