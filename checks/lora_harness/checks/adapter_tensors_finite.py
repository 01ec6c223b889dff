"""Every tensor in the adapter file is finite."""

import mlx.core as mx

from lora_harness.core.checking import Check, Measurement, register
from lora_harness.core.words import plural


@register
class AdapterTensorsFinite(Check):
    name = "adapter_tensors_finite"
    summary = "no NaN or Inf in any adapter tensor"
    symptom = "An adapter saved after the loss went NaN: every generation through it is garbage."
    remedy = "Retrain from the last finite checkpoint with a lower --learning-rate or --scale."
    requires = ("weights",)
    shown_failing_in = "tests/test_doctor.py::test_corrupted_adapters_are_findings"

    def measure(self, ctx) -> Measurement:
        bad = sorted(n for n, t in ctx.adapter.tensors.items() if not mx.all(mx.isfinite(t)).item())
        return Measurement(
            len(bad), 0, {"non_finite": bad[:5], "tensors": len(ctx.adapter.tensors)}
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.observed == 0:
            return "pass", f"all {measurement.evidence['tensors']} tensors finite"
        return (
            "fail",
            f"{plural(measurement.observed, 'tensor')} with NaN/Inf, e.g. {measurement.evidence['non_finite'][0]}",
        )
