"""The LoRA and training settings of one run, with mlx-lm's names and defaults where it has them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lora_harness.core.errors import InputError
from lora_harness.models.fixture import RECIPES

FINE_TUNE_TYPES = ("lora", "dora")
REFERENCE_LEARNING_RATE = 1e-3  # overfits fixture:tiny (width 64) at rank 8 in 8 steps
REFERENCE_RANK = 8
MLX_LM_LEARNING_RATE = 1e-5  # mlx_lm.lora's default, for a model whose width is unknown


def learning_rate_for(model_config: dict | None, rank: int = REFERENCE_RANK) -> float:
    """The default Adam learning rate: 1e-3 x min(1, 64 / hidden_size) x min(1, 8 / rank).

    Width: mu-P's rule for Adam. The fixture's 1e-3 made a random 7B diverge on an H100
    (loss 12.7 -> 28 in 8 steps); 1e-3 x 64 / 3584 = 1.8e-5 fell smoothly to 0.07.
    Rank: mlx-lm's scale is absolute (no alpha / r), and Adam moves every element of
    lora_b by about the learning rate, so one step changes a layer's output in proportion
    to the rank. At 1e-3, rank 32 jumped 0.43 -> 1.53 on the fixture and had not recovered
    by step 8.
    """
    width = (model_config or {}).get("hidden_size")
    if not isinstance(width, int) or width <= 0:
        return MLX_LM_LEARNING_RATE
    by_width = min(1.0, RECIPES["tiny"].hidden_size / width)
    by_rank = min(1.0, REFERENCE_RANK / max(1, rank))  # small ranks: 4e-3 at r2 was noisy
    return REFERENCE_LEARNING_RATE * by_width * by_rank


@dataclass
class LoRAConfig:
    """What `linear_to_lora_layers` is asked to do, and how the short training runs."""

    fine_tune_type: str = field(default="lora", metadata={"help": "lora or dora"})
    num_layers: int = field(
        default=-1, metadata={"help": "blocks to adapt, counted from the last; -1 = all"}
    )
    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    scale: float = field(
        default=20.0, metadata={"help": "absolute LoRA scale, mlx-lm's 'scale' (it has no alpha)"}
    )
    dropout: float = field(default=0.0, metadata={"help": "LoRA dropout"})
    keys: list[str] | None = field(
        default=None,
        metadata={
            "help": "comma-separated block-relative keys, e.g. self_attn.q_proj,self_attn.v_proj"
        },
    )
    batch_size: int = field(default=4, metadata={"help": "minibatch size"})
    iters: int = field(default=8, metadata={"help": "training steps of the check run, >= 2"})
    learning_rate: float = field(
        default=1e-3,
        metadata={
            "help": "Adam learning rate",
            "default_text": "1e-3 x min(1, 64 / hidden_size) x min(1, 8 / rank): 1e-3 on "
            "fixture:tiny at rank 8, 1.8e-5 on a 7B",
        },
    )
    grad_accumulation_steps: int = field(
        default=1,
        metadata={
            "help": "micro-batches per optimizer step (token-weighted, as one batch of the "
            "same rows; a last shorter window is applied)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed for LoRA init and batching"})
    max_seq_length: int = field(default=256, metadata={"help": "maximum tokens per example"})
    mask_prompt: bool = field(
        default=False,
        metadata={
            "help": "score only the completion of prompt/completion or chat rows, as mlx_lm.lora does"
        },
    )

    @property
    def use_dora(self) -> bool:
        return self.fine_tune_type == "dora"

    def lora_parameters(self) -> dict:
        """The `lora_parameters` dict of mlx-lm's adapter_config.json."""
        params = {"rank": self.rank, "scale": self.scale, "dropout": self.dropout}
        if self.keys is not None:
            params["keys"] = list(self.keys)
        return params

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        if self.fine_tune_type not in FINE_TUNE_TYPES:
            raise InputError(
                f"--fine-tune-type {self.fine_tune_type!r} is not supported; "
                f"use one of {', '.join(FINE_TUNE_TYPES)}"
            )
        if self.rank < 1:
            raise InputError(f"--rank must be at least 1, got {self.rank}")
        if self.num_layers == 0 or self.num_layers < -1:
            raise InputError(
                f"--num-layers {self.num_layers} adapts no block; use -1 for all or a positive count"
            )
        if self.keys is not None and not self.keys:
            raise InputError("--keys is empty; name at least one key, e.g. self_attn.q_proj")
        if self.iters < 1 or self.batch_size < 1:
            raise InputError("--iters and --batch-size must be at least 1")
        if self.grad_accumulation_steps < 1:
            raise InputError("--grad-accumulation-steps must be at least 1")


def coerce_field(name: str, value):
    """`value` cast to the LoRAConfig field's type (YAML 1.1 reads "1e-5" as a string)."""
    default = LoRAConfig.__dataclass_fields__[name].default
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            raise InputError(f"{name.replace('_', '-')} must be a number, got {value!r}")
    if name == "keys" and value is not None and not isinstance(value, list):
        raise InputError(f"keys must be a list of block-relative names, got {value!r}")
    if name == "keys" and value is not None:
        return _unique(value)
    return value


def parse_keys(text: str) -> list[str]:
    """`self_attn.q_proj, self_attn.v_proj` -> ['self_attn.q_proj', 'self_attn.v_proj']."""
    return _unique(key.strip() for key in text.split(",") if key.strip())


def _unique(keys) -> list:
    """Each key once, in the order given: a key named twice adapts its layers once, so
    counting it twice would expect twice the adapters mlx-lm makes."""
    return list(dict.fromkeys(keys))
