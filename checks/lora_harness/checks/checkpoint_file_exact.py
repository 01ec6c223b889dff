"""A checkpoint written during training holds exactly the adapters of that step and loads back."""

import mlx.core as mx

from lora_harness.core import fingerprint, keysets
from lora_harness.core.checking import Check, Measurement, SkipCheck, register


@register
class CheckpointFileExact(Check):
    name = "checkpoint_file_exact"
    summary = (
        "each saved adapter file holds exactly the trainable arrays, bit-identical to the "
        "adapters in memory when it was saved, and loads back into the model"
    )
    symptom = (
        "A checkpoint that saved the whole model or too few tensors, a stale or half-written "
        "file, or tensors that do not load back (renamed keys): resuming or serving it "
        "silently gives a different model than the one that trained."
    )
    remedy = (
        "Save dict(tree_flatten(model.trainable_parameters())) with mx.save_safetensors at "
        "the step it is named for, write to a temporary file and rename, and load with "
        "model.load_weights(path, strict=False) on the converted model."
    )
    requires = ("weights",)
    shown_failing_in = (
        "tests/test_guard_loop.py::test_a_checkpoint_of_the_whole_model_fails_at_its_save"
    )

    def measure(self, ctx) -> Measurement:
        checkpoint = getattr(ctx, "checkpoint", None)
        if checkpoint is None:
            raise SkipCheck("no checkpoint was saved at this moment")
        path, saved = checkpoint
        if not path.exists():
            return Measurement("no file", "a file", {"path": str(path), "missing_file": True})
        tensors = mx.load(str(path))
        measurement = keysets.compare(set(tensors), ctx.model.expectations.trainable_keys())
        differ = fingerprint.changed(saved, fingerprint.fingerprint(tensors))
        # Round trip: the file's tensors, loaded into the converted model, are its adapters.
        model = ctx.model.lora_model
        measurement.evidence.update(
            path=str(path),
            differs_from_memory=differ[:5],
            differs_count=len(differ),
            loads_back=_loads_back(model, path),
        )
        return measurement

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        ev = measurement.evidence
        if ev.get("missing_file"):
            return "fail", f"checkpoint {ev['path']} was not written"
        problems = []
        if ev["extra_count"] or ev["missing_count"]:
            problems.append(
                keysets.judge(measurement, "tensors", "not adapters", "adapters missing")[1]
            )
        if ev["differs_count"]:
            problems.append(
                f"{ev['differs_count']} tensors differ from the adapters at the save "
                f"(e.g. {ev['differs_from_memory'][0]})"
            )
        if ev["loads_back"] is not True:
            problems.append(f"does not load back: {ev['loads_back']}")
        if not problems:
            return "pass", (
                f"{ev['observed_count']} tensors, bit-identical to memory at the save, load back"
            )
        return "fail", f"{ev['path']}: " + "; ".join(problems)


def _loads_back(model, path) -> bool | str:
    """mlx-lm's resume path (load_weights strict=False) accepts every name in the file."""
    from mlx.utils import tree_flatten

    names = {name for name, _ in tree_flatten(model.parameters())}
    unknown = sorted(set(mx.load(str(path))) - names)
    return True if not unknown else f"{len(unknown)} names not in the model, e.g. {unknown[0]}"
