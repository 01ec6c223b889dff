"""A plan's inputs from flags and an mlx_lm.lora YAML (-c), with mlx_lm.lora's names and defaults.

Flags override the YAML. The training-shape keys the harness's own run does not use
(grad_checkpoint, grad_accumulation_steps) are read here from the same file, and the
sequence length defaults to mlx_lm.lora's (2048), since the plan is for the user's run.
"""

from __future__ import annotations

from lora_harness.core import declared
from lora_harness.core.errors import InputError
from lora_harness.core.validation import check, read_text
from lora_harness.lora.lora_config import MLX_LM_MAX_SEQ_LENGTH, LoRAConfig
from lora_harness.plan.memory import TrainingShape
from lora_harness.runs import options
from lora_harness.runs.given import given


def training_keys(path) -> dict:
    """grad_checkpoint, max_seq_length and model of a -c YAML (the LoRA keys, batch size and
    grad_accumulation_steps among them, are LoRAConfig's, read by Given.lora_config)."""
    if not path:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(read_text(path, "config file", "pass an mlx_lm.lora-style YAML"))
    except yaml.YAMLError:
        return {}  # Given.lora_config reports it with the line
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in ("grad_checkpoint", "max_seq_length", "model") if k in raw}


def model_spec(values) -> str | None:
    """--model, else the -c YAML's model."""
    values = given(values)
    return values.model or training_keys(values.config).get("model")


def from_values(values):
    """(model spec, LoRAConfig, TrainingShape) from the options given (a Given or option dests)."""
    values = given(values)
    lora = values.lora_config()
    yaml_keys = training_keys(values.config)
    seq = values.max_seq_length or yaml_keys.get("max_seq_length") or MLX_LM_MAX_SEQ_LENGTH
    # The YAML's value was read raw above (its default here is mlx-lm's): check it as declared.
    seq = declared.check_value(LoRAConfig, "max_seq_length", seq, "--max-seq-length")
    ranks = check("--ranks", values.ranks or 1, options.RULES["ranks"])
    if lora.batch_size % ranks:
        raise InputError(
            f"--batch-size {lora.batch_size} must be divisible by --ranks {ranks}: each rank "
            "trains an equal share of every batch"
        )
    run = TrainingShape(
        batch_size=lora.batch_size,
        seq_length=seq,
        grad_checkpoint=bool(values.grad_checkpoint or yaml_keys.get("grad_checkpoint")),
        grad_accumulation_steps=lora.grad_accumulation_steps,
        ranks=ranks,
    )
    return model_spec(values), lora, run
