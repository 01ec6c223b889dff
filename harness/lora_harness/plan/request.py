"""A plan's inputs from flags and an mlx_lm.lora YAML (-c), with mlx_lm.lora's names and defaults.

Flags override the YAML. The training-shape keys the harness's own run does not use
(grad_checkpoint, grad_accumulation_steps) are read here from the same file, and the
sequence length defaults to mlx_lm.lora's (2048), since the plan is for the user's run.
"""

from __future__ import annotations

from lora_harness.core import declared
from lora_harness.core.errors import InputError
from lora_harness.core.validation import Rule, check, read_text
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.plan.memory import TrainingShape
from lora_harness.runs import options

MLX_LM_MAX_SEQ_LENGTH = 2048  # mlx_lm.lora's default --max-seq-length
# The plan's own flags, declared once: lora-harness plan derives its argparse types from these.
RANKS = Rule(int, minimum=1, hint="data-parallel ranks, as mlx.launch -n N")
Q_BITS = Rule(int, minimum=2, maximum=8)
Q_GROUP_SIZE = Rule(int, minimum=16)
MEMORY_GB = Rule(float, above=0)
CALIBRATE_STEPS = Rule(int, minimum=2, hint="the first step compiles")


def training_keys(path) -> dict:
    """grad_checkpoint, max_seq_length and model of a -c YAML (the LoRA keys, batch size and
    grad_accumulation_steps among them, are LoRAConfig's, read by options.lora_config_from)."""
    if not path:
        return {}
    import yaml

    try:
        raw = yaml.safe_load(read_text(path, "config file", "pass an mlx_lm.lora-style YAML"))
    except yaml.YAMLError:
        return {}  # options.lora_config_from reports it with the line
    if not isinstance(raw, dict):
        return {}
    return {k: raw[k] for k in ("grad_checkpoint", "max_seq_length", "model") if k in raw}


def from_values(values: dict):
    """(model spec, LoRAConfig, TrainingShape) from option values (dest -> value)."""
    lora = options.lora_config_from(values)
    yaml_keys = training_keys(values.get("config"))
    seq = values.get("max_seq_length") or yaml_keys.get("max_seq_length") or MLX_LM_MAX_SEQ_LENGTH
    accumulate = lora.grad_accumulation_steps
    checkpoint = bool(values.get("grad_checkpoint") or yaml_keys.get("grad_checkpoint"))
    ranks = values.get("ranks") or 1
    # The YAML's value was read raw above (its default here is mlx-lm's): check it as declared.
    seq = declared.check_value(LoRAConfig, "max_seq_length", seq, "--max-seq-length")
    check("--ranks", ranks, RANKS)
    if lora.batch_size % ranks:
        raise InputError(
            f"--batch-size {lora.batch_size} must be divisible by --ranks {ranks}: each rank "
            "trains an equal share of every batch"
        )
    run = TrainingShape(
        batch_size=lora.batch_size,
        seq_length=seq,
        grad_checkpoint=checkpoint,
        grad_accumulation_steps=accumulate,
        ranks=ranks,
    )
    model = values.get("model") or yaml_keys.get("model")
    return model, lora, run
