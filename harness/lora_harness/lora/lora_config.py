"""The LoRA and training settings of one run, with mlx-lm's names and defaults where it has them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lora_harness.core import declared
from lora_harness.core.declared import Spell, setting
from lora_harness.core.validation import Rule
from lora_harness.models.fixture import RECIPES

FINE_TUNE_TYPES = ("lora", "dora")
REFERENCE_LEARNING_RATE = 1e-3  # overfits fixture:tiny (width 64) at rank 8 in 8 steps
REFERENCE_RANK = 8
MLX_LM_LEARNING_RATE = 1e-5  # mlx_lm.lora's default, for a model whose width is unknown
MLX_LM_MAX_SEQ_LENGTH = 2048  # mlx_lm.lora's default --max-seq-length


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


def parse_keys(text: str) -> list[str]:
    """`self_attn.q_proj, self_attn.v_proj` -> ['self_attn.q_proj', 'self_attn.v_proj']."""
    return _unique(key.strip() for key in text.split(",") if key.strip())


def _unique(keys) -> list:
    """Each key once, in the order given: a key named twice adapts its layers once, so
    counting it twice would expect twice the adapters mlx-lm makes."""
    return list(dict.fromkeys(keys))


def field_name(name: str) -> str:
    """How the Python API names a field in an error: as it is."""
    return name


@dataclass
class LoRAConfig:
    """What `linear_to_lora_layers` is asked to do, and how the short training runs.

    Each field's declaration (help, default, Rule) is the only statement of its bounds:
    the flags, the YAML config, adapter configs and `watch(lora=...)` all derive from it.
    """

    fine_tune_type: str = setting("lora", "lora or dora", Rule(str, choices=FINE_TUNE_TYPES))
    num_layers: int = setting(
        -1,
        "blocks to adapt, counted from the last; -1 = all",
        Rule(int, minimum=1, also=(-1,), hint="0 adapts no block; use -1 for all or a count >= 1"),
    )
    rank: int = setting(8, "LoRA rank r", Rule(int, minimum=1, hint="a LoRA rank such as 8"))
    scale: float = setting(
        20.0,
        "absolute LoRA scale, mlx-lm's 'scale' (it has no alpha)",
        Rule(float, above=0, hint="mlx-lm's absolute scale, e.g. 20.0"),
    )
    dropout: float = setting(
        0.0, "LoRA dropout", Rule(float, minimum=0, below=1, hint="a probability such as 0.05")
    )
    keys: list[str] | None = setting(
        None,
        "comma-separated block-relative keys, e.g. self_attn.q_proj,self_attn.v_proj",
        Rule(list, items=str, nonempty=True, hint="name at least one key, e.g. self_attn.q_proj"),
        parse=parse_keys,
        default_text="every Linear of a block",
    )
    batch_size: int = setting(4, "minibatch size", Rule(int, minimum=1))
    iters: int = setting(
        8,
        "training steps of the check run",
        Rule(int, minimum=2, hint="the loss checks compare the first and last step"),
    )
    learning_rate: float = setting(
        1e-3,
        "Adam learning rate",
        Rule(float, above=0, hint="e.g. 1e-3"),
        default_text="1e-3 x min(1, 64 / hidden_size) x min(1, 8 / rank): 1e-3 on "
        "fixture:tiny at rank 8, 1.8e-5 on a 7B",
    )
    grad_accumulation_steps: int = setting(
        1,
        "micro-batches per optimizer step (token-weighted, as one batch of the same rows; "
        "a last shorter window is applied)",
        Rule(int, minimum=1, hint="micro-batches per update, e.g. 4"),
    )
    seed: int = setting(
        0, "seed for LoRA init and batching", Rule(int, minimum=0, maximum=2**32 - 1)
    )
    max_seq_length: int = setting(
        256,
        "maximum tokens per example",
        Rule(int, minimum=2, hint="a step needs an input and a target token"),
    )
    mask_prompt: bool = setting(
        False,
        "score only the completion of prompt/completion or chat rows, as mlx_lm.lora does",
        Rule(bool),
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

    def validate(self, spell: Spell = field_name) -> None:
        """Every field obeys its declaration; `spell` names a field as the caller's user wrote it."""
        declared.check_instance(self, spell)

    @classmethod
    def checked(cls, values: dict, spell: Spell = field_name) -> LoRAConfig:
        """A LoRAConfig from field values as written (numbers as text, keys as "a,b"), checked."""
        config = declared.checked(cls, values, spell)
        if config.keys is not None:
            config.keys = _unique(config.keys)
        return config
