"""The run context: builds what checks ask for, lazily and once, and shares it.

Structural checks need only the converted model; training checks need the short
training run (fingerprints before/after, gradient keys, optimizer state, losses).
Nothing is built until a check asks for it, so `--check lora_layer_count` on a
shape-only 7B model never touches a weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from mlx.utils import tree_flatten

from harness import baselines, data, expectations, fingerprint, generation, trainer
from harness import distributed as dist
from harness import recipe as recipes
from harness.adapters import AdapterMixin
from harness.dpo_context import DPOMixin
from harness.generation import GenerationSettings
from harness.lora_config import LoRAConfig
from harness.sources import ModelSource


@dataclass
class TrainingOutcome:
    """What the short training run left behind for the checks to read."""

    metrics: list[dict]
    gradient_keys: set[str]
    optimizer_state_keys: set[str]
    base_before: dict
    base_after: dict
    adapter_before: dict
    adapter_after: dict
    optimizer: object = field(repr=False, default=None)
    extra: dict = field(default_factory=dict)  # trainer-specific evidence (e.g. DPO reference)


class GenerationMixin:
    """Prompts, references, generations and voice scores, built on demand."""

    @cached_property
    def stop_ids(self) -> set[int]:
        return generation.stop_token_ids(self.tokenizer, self.source.path)

    @cached_property
    def special_token_literals(self) -> list[str]:
        return generation.special_literals(self.tokenizer)

    @cached_property
    def prompts(self) -> list[str]:
        path = self.generation_settings.prompts_path
        return data.read_texts(path, "--prompts") if path else data.default_prompts()

    @cached_property
    def references(self) -> list[str]:
        path = self.generation_settings.references_path
        return data.read_texts(path, "--voice-references") if path else data.default_references()

    @cached_property
    def scorer(self):
        from harness.voice import load_scorer

        return load_scorer(self.generation_settings.scorer)

    def generate(self) -> list[generation.Generation]:
        settings = self.generation_settings
        return generation.generate_all(
            self.lora_model,
            self.tokenizer,
            self.prompts,
            self.stop_ids,
            max_tokens=settings.max_tokens,
            seed=settings.seed,
        )

    @cached_property
    def init_generations(self) -> list[generation.Generation]:
        """Generations of the LoRA model at init (the base model's), before any step."""
        if self._training is not None:
            raise RuntimeError("init generations must be taken before training")
        return self.generate()

    @cached_property
    def generations(self) -> list[generation.Generation]:
        """Generations of the trained model."""
        self.training  # noqa: B018
        return self.generate()

    def voice_score(self, generations: list[generation.Generation]) -> float:
        return float(self.scorer([g.text for g in generations], self.references))

    def baseline_key(self) -> str:
        scorer = self.generation_settings.scorer or "harness.voice:stylometric_score"
        fingerprint_ = data.data_fingerprint(self.training_rows)
        return baselines.baseline_key(self.source.spec, self.source.config, fingerprint_, scorer)

    def saved_baseline(self) -> dict | None:
        path = self.generation_settings.baseline_path
        return baselines.lookup(path, self.baseline_key()) if path else None


class RunContext(GenerationMixin, AdapterMixin, DPOMixin, dist.DistributedMixin):
    def __init__(
        self,
        source: ModelSource,
        lora: LoRAConfig,
        pins: dict | None = None,
        recipe: recipes.Recipe = recipes.CORRECT,
        data_dir: str | None = None,
        step_callbacks=(),
        generation_settings: GenerationSettings | None = None,
        trainer_kind: str = "sft",
        distributed: bool = False,
    ):
        self.source = source
        self.lora = lora
        self.pins = dict(pins or {})
        self.recipe = recipe
        self.data_dir = data_dir
        self.step_callbacks = list(step_callbacks)
        self.generation_settings = generation_settings or GenerationSettings()
        self.trainer_kind = trainer_kind
        self.group = dist.group() if distributed else None
        self.distributed_timeout = 600.0
        # Context properties that must be built before training moves the adapters.
        self.before_training: set[str] = set()
        self._training: TrainingOutcome | Exception | None = None

    # -- capabilities -------------------------------------------------------------
    def offers(self, capability: str) -> bool:
        if capability == "weights":
            return self.source.has_weights
        if capability == "dpo":
            return self.trainer_kind == "dpo"
        if capability == "distributed":
            return self.group is not None
        return True

    def why_not(self, capability: str) -> str:
        if capability == "weights":
            return f"{self.source.spec} is shape-only: weights are never materialised"
        if capability == "dpo":
            return "a DPO check: run with --trainer dpo"
        if capability == "distributed":
            return "a distributed check: launch with mlx.launch ... lora-harness run --distributed"
        return f"this run does not offer {capability}"

    # -- model and expectations ------------------------------------------------------
    @cached_property
    def _loaded(self):
        return self.source.load()

    @property
    def tokenizer(self):
        return self._loaded[1]

    @cached_property
    def expectations(self) -> expectations.Expectations:
        # Must read the model before conversion: the walk sees the original modules.
        if "lora_model" in self.__dict__:
            raise RuntimeError("expectations must be derived before the model is converted")
        model = self._loaded[0]
        return expectations.derive(self.source.config, model, self.lora, self.pins)

    @cached_property
    def training_rows(self) -> list[dict]:
        # Under DPO, --data holds preference pairs; logit probes use the built-in corpus.
        return data.load_rows(None if self.trainer_kind == "dpo" else self.data_dir)

    @cached_property
    def training_dataset(self):
        """The rows tokenised by the recipe (mlx-lm's dataset classes when correct)."""
        return self.recipe.tokenize(self.training_rows, self.tokenizer)

    @cached_property
    def probe_batch(self):
        """The tiny batch the run overfits, from --data or the built-in corpus."""
        lora = self.lora
        return data.first_batch(
            self.training_dataset, lora.batch_size, lora.max_seq_length, lora.seed
        )

    @cached_property
    def base_logits(self):
        """Logits of the unconverted model on the probe batch."""
        if "lora_model" in self.__dict__:
            raise RuntimeError("base logits must be taken before the model is converted")
        return recipes.probe_logits(self._loaded[0], self.probe_batch[0])

    @cached_property
    def lora_model(self):
        """The model after the recipe's freeze -> convert -> unfreeze."""
        self.expectations  # noqa: B018  (derive from the unconverted model first)
        if self.source.has_weights:
            self.base_logits  # noqa: B018
        return trainer.prepare_lora_model(self._loaded[0], self.lora, self.recipe)

    @cached_property
    def init_logits(self):
        return recipes.probe_logits(self.lora_model, self.probe_batch[0])

    @cached_property
    def trained_logits(self):
        self.training  # noqa: B018
        return recipes.probe_logits(self.lora_model, self.probe_batch[0])

    def trainable_keys(self) -> set[str]:
        return {name for name, _ in tree_flatten(self.lora_model.trainable_parameters())}

    # -- training -------------------------------------------------------------------
    @property
    def training(self) -> TrainingOutcome:
        """The short training run, done once; a failure is kept and re-raised, never retried."""
        if self._training is None:
            try:
                self._training = self._train_dpo() if self.trainer_kind == "dpo" else self._train()
            except Exception as error:
                self._training = error
        if isinstance(self._training, Exception):
            raise self._training
        return self._training

    def _train(self) -> TrainingOutcome:
        model = self.lora_model
        self.init_logits  # noqa: B018  (before any step moves the adapters)
        for name in sorted(self.before_training):
            getattr(self, name)
        before = fingerprints(model)
        gradient_keys: set[str] = set()  # filled when the compiled step is traced
        optimizer = trainer.make_optimizer(model, self.lora, self.recipe)
        if self.group is not None:
            return self._train_distributed(model, before, gradient_keys, optimizer)
        batches = [self.probe_batch] * self.lora.iters
        metrics = trainer.train(
            model,
            optimizer,
            batches,
            self.recipe,
            callbacks=self.step_callbacks,
            gradient_keys=gradient_keys,
        )
        return outcome(model, before, metrics, gradient_keys, optimizer)

    @property
    def trained(self) -> bool:
        return isinstance(self._training, TrainingOutcome)


def fingerprints(model) -> tuple[dict, dict]:
    """(adapter, base) digests of every parameter of `model`."""
    adapter, base = recipes.split_adapter_and_base(model)
    return fingerprint.fingerprint(adapter), fingerprint.fingerprint(base)


def outcome(model, before, metrics, gradient_keys, optimizer, extra=None) -> TrainingOutcome:
    """What a training run leaves for the checks, with `before` = fingerprints() at the start."""
    adapter_after, base_after = fingerprints(model)
    return TrainingOutcome(
        metrics=metrics,
        gradient_keys=gradient_keys,
        optimizer_state_keys=optimizer_state_keys(optimizer),
        base_before=before[1],
        base_after=base_after,
        adapter_before=before[0],
        adapter_after=adapter_after,
        optimizer=optimizer,
        extra=extra or {},
    )


def optimizer_state_keys(optimizer) -> set[str]:
    """Parameter names that hold optimizer state (Adam's m/v live under each name)."""
    keys = set()
    for name, _ in tree_flatten(optimizer.state):
        owner, _, _ = name.rpartition(".")
        if owner:
            keys.add(owner)
    return keys
