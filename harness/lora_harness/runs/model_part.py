"""The run context's model part: the model, its tokenizer, the LoRA conversion, the data.

Built lazily and once. The order that matters is kept by construction: `lora_model`
derives the expectations and takes the base logits from the unconverted model before
the recipe converts it, so no caller can ask in the wrong order.
"""

from __future__ import annotations

from functools import cached_property

from mlx.utils import tree_flatten

from lora_harness.core import numerics
from lora_harness.core.checking import PartFailed
from lora_harness.core.errors import InputError
from lora_harness.lora import dpo, expectations, trainer
from lora_harness.lora import recipe as recipes
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import ModelSource, resolve
from lora_harness.text import data


class ModelPart:
    def __init__(
        self,
        source: ModelSource | str | None,
        lora: LoRAConfig,
        recipe: recipes.Recipe = recipes.CORRECT,
        pins: dict | None = None,
        data_dir: str | None = None,
        trainer_kind: str = "sft",
    ):
        self._source = source  # a ModelSource, or a --model spec resolved on first use
        self.lora, self.recipe = lora, recipe
        self.pins = dict(pins or {})
        self.data_dir, self.trainer_kind = data_dir, trainer_kind
        self._conversion_error: PartFailed | None = None

    @cached_property
    def source(self) -> ModelSource:
        return self._source if isinstance(self._source, ModelSource) else resolve(self._source)

    @cached_property
    def _loaded(self):
        return self.source.load()

    @property
    def tokenizer(self):
        return self._loaded[1]

    @cached_property
    def expectations(self) -> expectations.Expectations:
        """Derived from the config and the unconverted model, never from the converter."""
        return expectations.derive(self.source.config, self._loaded[0], self.lora, self.pins)

    @cached_property
    def training_rows(self) -> list[dict]:
        # Under DPO, --data holds preference pairs; logit probes use the built-in corpus.
        return data.load_rows(None if self.trainer_kind == "dpo" else self.data_dir)

    @cached_property
    def dpo_rows(self) -> list[dict]:
        return data.load_rows(self.data_dir, kind="dpo") if self.data_dir else dpo.default_pairs()

    @cached_property
    def training_dataset(self):
        """The rows tokenised by the recipe (mlx-lm's dataset classes when correct)."""
        try:
            if self.lora.mask_prompt:  # only then: a recipe's tokenize may not take the flag
                return self.recipe.tokenize(self.training_rows, self.tokenizer, mask_prompt=True)
            return self.recipe.tokenize(self.training_rows, self.tokenizer)
        except InputError:
            raise
        except Exception as error:
            if "tokenize" not in self.recipe.user_steps + self.recipe.fault_steps:
                raise  # the correct recipe's own step: a harness error, reported as one
            message = " ".join(str(error).split())[:200]
            raise InputError(
                f"--recipe {self.recipe.name}: its tokenize step raised "
                f"{error.__class__.__name__}: {message}"
            ) from error

    @cached_property
    def _probe(self):
        lora = self.lora
        return data.first_batch_and_examples(
            self.training_dataset, lora.batch_size, lora.max_seq_length, lora.seed
        )

    @property
    def probe_batch(self):
        """The tiny batch the run overfits, from --data or the built-in corpus."""
        return self._probe[0]

    @property
    def probe_examples(self) -> tuple[int, ...]:
        """The dataset index of each row of the probe batch."""
        return self._probe[1]

    @property
    def base_logits(self):
        """Logits of the unconverted model on the probe batch (taken before conversion)."""
        self.lora_model  # noqa: B018
        return self._base_logits

    @cached_property
    def lora_model(self):
        """The model after the recipe's freeze -> convert -> unfreeze.

        Built once: a recipe step that raises is kept and re-raised as the same error in
        every check that asks, never retried on the half-converted model it left."""
        if self._conversion_error is not None:
            raise self._conversion_error
        self.expectations  # noqa: B018  (the walk must see the original modules)
        base = self._loaded[0]
        self.precision = numerics.precision_of(base)
        self.noise_floor = None
        self._base_logits = None
        if self.source.has_weights:
            self._base_logits = self.logits(base)
            self.noise_floor = numerics.noise_floor(base, *self.probe_batch)
        try:
            return trainer.prepare_lora_model(self._loaded[0], self.lora, self.recipe)
        except Exception as error:
            message = " ".join(str(error).split()) or "(no message)"
            self._conversion_error = PartFailed(
                "preparing the LoRA model (the recipe's freeze -> convert -> unfreeze) failed: "
                f"{error.__class__.__name__}: {message}"
            )
            self._conversion_error.__cause__ = error
            raise self._conversion_error from error

    def tolerance(self, rounding: float = 0.0) -> tuple[float, float]:
        """(noise floor, allowed relative difference) for logits of this model on this backend."""
        self.lora_model  # noqa: B018  (both are measured on the unconverted model)
        floor = self.noise_floor or 0.0
        return floor, numerics.allowed_difference(self.precision, floor, rounding)

    @cached_property
    def init_logits(self):
        """Logits of the LoRA model before any step (taken before training starts)."""
        return self.logits()

    def logits(self, model=None):
        """Probe-batch logits of `model` (default: the LoRA model as it is now) at the real
        tokens: (tokens, vocab), each row up to its length, never its padding."""
        tokens, lengths = self.probe_batch
        logits = recipes.probe_logits(model or self.lora_model, tokens)
        return numerics.real_positions(logits, lengths)

    def trainable_keys(self) -> set[str]:
        return {name for name, _ in tree_flatten(self.lora_model.trainable_parameters())}
