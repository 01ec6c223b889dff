"""adapters.safetensors holds exactly the expected LoRA tensors, with the right shapes."""

from lora_harness.core import keysets
from lora_harness.core.checking import Check, Measurement, register


@register
class AdapterFileExact(Check):
    name = "adapter_file_exact"
    summary = (
        "the adapter file holds exactly the expected LoRA tensor names and shapes, no base weights"
    )
    symptom = (
        "An adapter file with base weights in it (the whole model trained), missing tensors "
        "(too few layers adapted) or wrong shapes (rank or keys differ from the config)."
    )
    remedy = (
        "Save only model.trainable_parameters() after the correct recipe; make adapter_config.json "
        "match the rank, keys and num_layers the tensors were trained with."
    )
    requires = ("weights",)

    def measure(self, ctx) -> Measurement:
        tensors = ctx.adapter.tensors
        expected_shapes = ctx.model.expectations.adapter_shapes()
        measurement = keysets.compare(set(tensors), set(expected_shapes))
        wrong = sorted(
            n
            for n in set(tensors) & set(expected_shapes)
            if tuple(tensors[n].shape) != expected_shapes[n]
        )
        measurement.observed += f", {len(wrong)} wrong shapes"
        measurement.expected += ", 0 wrong shapes"
        measurement.evidence.update(
            wrong_shapes=[
                f"{n}: {tuple(tensors[n].shape)} != {expected_shapes[n]}" for n in wrong[:5]
            ],
            wrong_shape_count=len(wrong),
        )
        return measurement

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev["extra_count"] + ev["missing_count"] + ev["wrong_shape_count"] == 0:
            return "pass", f"{ev['observed_count']} tensors, exactly the expected names and shapes"
        status, message = keysets.judge(
            measurement, "adapter file", "unexpected tensors", "missing tensors"
        )
        if ev["wrong_shape_count"]:
            message = (
                f"{message}; {ev['wrong_shape_count']} wrong shapes (e.g. {ev['wrong_shapes'][0]})"
            )
        return "fail", message.replace("adapter file: ", "adapter file: ", 1)
