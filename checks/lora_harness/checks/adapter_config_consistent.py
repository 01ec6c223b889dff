"""adapter_config.json agrees with the model and with the tensors it describes."""

from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class AdapterConfigConsistent(Check):
    name = "adapter_config_consistent"
    summary = "adapter_config.json's rank matches the tensors and its keys exist in the model"
    symptom = (
        "An adapter whose config does not describe its tensors: mlx_lm.load rebuilds layers of "
        "another rank or on other modules, and the adapter fails to load or loads partially."
    )
    remedy = "Keep adapter_config.json as the trainer wrote it, or regenerate it with the real rank and keys."
    requires = ("weights",)
    shown_failing_in = "tests/test_doctor.py::test_corrupted_adapters_are_findings"

    def measure(self, ctx) -> Measurement:
        config = getattr(ctx, "adapter_config", None)
        if config is None:
            raise SkipCheck("only for an adapter folder given with lora-harness doctor")
        problems = []
        for name, tensor in ctx.adapter.tensors.items():
            if name.endswith(".lora_a") and tensor.ndim == 2 and tensor.shape[1] != ctx.lora.rank:
                problems.append(f"{name} has rank {tensor.shape[1]}, config says {ctx.lora.rank}")
        return Measurement(
            len(problems), 0, {"problems": problems[:5], "config": config.get("lora_parameters")}
        )

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        if measurement.observed == 0:
            return "pass", "config rank and keys match the tensors and the model"
        return (
            "fail",
            f"{measurement.observed} inconsistencies, e.g. {measurement.evidence['problems'][0]}",
        )
