"""The run context: typed parts that build what checks ask for, lazily and once.

    ctx.model       ModelPart: model, tokenizer, expectations, LoRA model, data, logits
    ctx.training    TrainingOutcome (+ .dpo / .ranks): the short training run, done once
    ctx.generation  GenerationPart: prompts, generations, voice scores, baselines
    ctx.adapter     AdapterFiles: the adapter as files, read back and fused by mlx-lm

Nothing is built until a check asks for it, so `--check lora_layer_count` on a
shape-only 7B model never touches a weight.
"""

from __future__ import annotations

import time
from functools import cached_property

from lora_harness.core.checking import PartFailed
from lora_harness.lora import recipe as recipes
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import ModelSource
from lora_harness.runs import distributed as dist
from lora_harness.runs.adapter_part import AdapterFiles
from lora_harness.runs.distributed import DEFAULT_DISTRIBUTED_TIMEOUT_S
from lora_harness.runs.generation_part import GenerationPart
from lora_harness.runs.model_part import ModelPart
from lora_harness.runs.training import TrainingOutcome, train_sft
from lora_harness.text.generation import GenerationSettings

CAPABILITIES = {
    "weights": "{spec} is shape-only: weights are never materialised",
    "generation": "random weights: {spec} has learned no text, so its generations say nothing",
    "dpo": "a DPO check: run with --trainer dpo",
    "distributed": "a distributed check: launch with mlx.launch ... lora-harness run --distributed",
}


def training_failed(error: Exception) -> PartFailed:
    """The one error every check that needed training reports: what training raised.

    Raised from the stored error so no part that needed training (loading the adapter
    files, say) can mistake it for a failure of its own."""
    if isinstance(error, PartFailed):
        return error
    message = " ".join(str(error).split()) or "(no message)"
    failed = PartFailed(f"training failed: {error.__class__.__name__}: {message}")
    failed.__cause__ = error
    return failed


class RunContext:
    def __init__(
        self,
        source: ModelSource | str | None,
        lora: LoRAConfig,
        pins: dict | None = None,
        recipe: recipes.Recipe = recipes.CORRECT,
        data_dir: str | None = None,
        step_callbacks=(),
        generation_settings: GenerationSettings | None = None,
        trainer_kind: str = "sft",
        distributed: bool = False,
        distributed_timeout: float = DEFAULT_DISTRIBUTED_TIMEOUT_S,
        adapter_path=None,
    ):
        self.model = ModelPart(source, lora, recipe, pins, data_dir, trainer_kind)
        self.generation = GenerationPart(
            self.model, generation_settings or GenerationSettings(), self._ensure_trained
        )
        self.adapter = AdapterFiles(self.model, self._ensure_trained, adapter_path)
        self.step_callbacks = list(step_callbacks)
        self.trainer_kind = trainer_kind
        self.group = dist.group() if distributed else None
        self.distributed_timeout = distributed_timeout
        # Context parts that must be built before training moves the adapters.
        self.before_training: set[str] = set()
        self._training: TrainingOutcome | Exception | None = None
        self.training_seconds: float | None = None  # booked apart from the check that asked

    @classmethod
    def from_settings(cls, settings, step_callbacks=()) -> RunContext:
        """The context of one run as the front end's Settings describe it (the model is
        resolved on first use, so building a context is cheap and never fails)."""
        return cls(
            settings.model,
            settings.lora,
            pins=settings.pins,
            recipe=settings.recipe,
            data_dir=settings.data_dir,
            step_callbacks=step_callbacks,
            generation_settings=settings.generation,
            trainer_kind=settings.trainer,
            distributed=settings.distributed,
            distributed_timeout=settings.distributed_timeout,
        )

    # Shortcuts to what every front end reads.
    source = property(lambda self: self.model.source)
    lora = property(lambda self: self.model.lora)
    recipe = property(lambda self: self.model.recipe)

    # -- capabilities -------------------------------------------------------------
    def offers(self, capability: str) -> bool:
        if capability == "weights":
            return self.source.has_weights
        if capability == "generation":
            return self.source.has_weights and not self.source.random_weights
        if capability == "dpo":
            return self.trainer_kind == "dpo"
        if capability == "distributed":
            return self.group is not None
        return True

    def why_not(self, capability: str) -> str:
        reason = CAPABILITIES.get(capability, "this run does not offer {capability}")
        return reason.format(spec=self.source.spec, capability=capability)

    # -- training -------------------------------------------------------------------
    @property
    def training(self) -> TrainingOutcome:
        """The short training run, done once; a failure is kept and re-raised, never retried."""
        if self._training is None:
            started = time.perf_counter()
            try:
                self._training = self._train()
            except Exception as error:
                self._training = error
            self.training_seconds = time.perf_counter() - started
        if isinstance(self._training, Exception):
            raise training_failed(self._training)
        return self._training

    @property
    def training_error(self) -> Exception | None:
        """What stopped the training run on this process, if it ran and failed."""
        return self._training if isinstance(self._training, Exception) else None

    def _ensure_trained(self) -> None:
        self.training  # noqa: B018

    def _train(self) -> TrainingOutcome:
        self.model.init_logits  # noqa: B018  (before any step moves the adapters)
        for part_and_name in sorted(self.before_training):
            part, _, name = part_and_name.rpartition(".")
            getattr(getattr(self, part) if part else self, name)
        if self.trainer_kind == "dpo":
            from lora_harness.runs.dpo_run import train_dpo

            return train_dpo(self.model, self.step_callbacks)
        if self.group is not None:
            return dist.train_distributed(self)
        return train_sft(self.model, self.step_callbacks)

    @property
    def trained(self) -> bool:
        return isinstance(self._training, TrainingOutcome)

    # -- trainer-behaviour probes (run with --check NAME): the harness's own trainer ----------
    @cached_property
    def accumulation(self):
        """k micro-batches of the run's data for grad_accumulation_matches_batch (k > 1)."""
        from lora_harness.lora.accumulation import AccumulationProbe, harness_trainer

        k = self.lora.grad_accumulation_steps
        if k < 2:
            return None
        return AccumulationProbe(harness_trainer, "harness", k, self._micro_batches(2 * k))

    @cached_property
    def resume(self):
        """The harness's checkpoint/resume on the run's data, for resume_continues_run."""
        from lora_harness.lora import trainer
        from lora_harness.lora.resume_probe import harness_probe

        model, lora = self.model.lora_model, self.lora
        return harness_probe(lambda: trainer.make_optimizer(model, lora), self._micro_batches(4))

    @cached_property
    def chat_format(self):
        """The recipe's tokenisation of the run's rows against inference's prompt format."""
        from lora_harness.checks.chat_format_parity import ChatFormatProbe, default_inference

        dataset = getattr(self.model.training_dataset, "_data", self.model.training_dataset)
        tokenizer = self.model.tokenizer
        rows = self.model.training_rows[:8]
        return ChatFormatProbe(
            dataset.process, rows, tokenizer, default_inference(tokenizer), self.lora.mask_prompt
        )

    def _micro_batches(self, count: int) -> list:
        from mlx_lm.tuner.trainer import iterate_batches

        lora = self.lora
        stream = iterate_batches(
            self.model.training_dataset, lora.batch_size, lora.max_seq_length, True, lora.seed
        )
        return [next(stream) for _ in range(count)]

    @cached_property
    def trained_logits(self):
        """Probe logits of the LoRA model after training."""
        self._ensure_trained()
        return self.model.logits()
