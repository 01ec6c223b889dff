"""The run context's generation part: prompts, references, generations and voice scores.

`init_generations` are taken before training moves the adapters (the model's voice
before LoRA); `generations` after. Where they come from is passed in, so the doctor can
take the "before" with the adapter disabled instead of before a training run.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from lora_harness.runs import baselines
from lora_harness.text import data, generation
from lora_harness.text.generation import Generation, GenerationSettings
from lora_harness.text.voice import DEFAULT_SCORER, bootstrap_spread, load_scorer


class GenerationPart:
    # True where the built-in references say nothing about the voice (an adapter made elsewhere).
    needs_references = False

    def __init__(self, model_part, settings: GenerationSettings, ensure_trained: Callable):
        self.model_part, self.settings = model_part, settings
        self._ensure_trained = ensure_trained  # runs (or refuses) training before `generations`

    @cached_property
    def stop_ids(self) -> set[int]:
        return generation.stop_token_ids(self.model_part.tokenizer, self.model_part.source.path)

    @cached_property
    def special_token_literals(self) -> list[str]:
        return generation.special_literals(self.model_part.tokenizer)

    @cached_property
    def prompts(self) -> list[str]:
        path = self.settings.prompts_path
        return data.read_texts(path, "--prompts") if path else data.default_prompts()

    @cached_property
    def references(self) -> list[str]:
        path = self.settings.references_path
        return data.read_texts(path, "--voice-references") if path else data.default_references()

    @cached_property
    def scorer(self):
        return load_scorer(self.settings.scorer)

    @cached_property
    def prompt_format(self) -> str:
        """'chat' where the model is used through its chat template: the tokenizer has one and
        the model learns from chat rows (an instruct model given bare text may answer with
        nothing at all); otherwise 'plain'."""
        if not getattr(self.model_part.tokenizer, "chat_template", None):
            return "plain"
        return "chat" if self.trained_on_chat() else "plain"

    def trained_on_chat(self) -> bool:
        rows = self.model_part.training_rows
        return bool(rows) and "messages" in rows[0]

    def generate(self) -> list[Generation]:
        return generation.generate_all(
            self.model_part.lora_model,
            self.model_part.tokenizer,
            self.prompts,
            self.stop_ids,
            max_tokens=self.settings.max_tokens,
            seed=self.settings.seed,
            prompt_format=self.prompt_format,
        )

    @cached_property
    def init_generations(self) -> list[Generation]:
        """Generations of the LoRA model at init (the base model's), before any step."""
        return self.generate()

    @cached_property
    def generations(self) -> list[Generation]:
        """Generations of the trained model."""
        self._ensure_trained()
        return self.generate()

    @property
    def generated(self) -> bool:
        return "generations" in vars(self)  # cached_property stores its value on the instance

    def voice_score(self, generations: list[Generation]) -> float:
        return float(self.scorer([g.text for g in generations], self.references))

    def voice_spread(self, generations: list[Generation]) -> float:
        """The scorer's standard error on these generations (bootstrap over them)."""
        return bootstrap_spread(self.scorer, [g.text for g in generations], self.references)

    def baseline_key(self) -> str:
        scorer = self.settings.scorer or DEFAULT_SCORER
        rows = data.data_fingerprint(self.model_part.training_rows)
        source = self.model_part.source
        return baselines.baseline_key(source.spec, source.config, rows, scorer)

    def saved_baseline(self) -> dict | None:
        path = self.settings.baseline_path
        return baselines.lookup(path, self.baseline_key()) if path else None

    def section(self) -> dict | None:
        """The report's generation section: voice scores and samples, when the run generated."""
        if not self.generated:
            return None
        section = {
            "trained_voice_score": self.voice_score(self.generations),
            "trained_voice_spread": self.voice_spread(self.generations),
            "samples": [g.to_dict() for g in self.generations],
            "stop_token_ids": sorted(self.stop_ids),
            "prompt_format": self.prompt_format,
            "baseline_key": self.baseline_key(),
        }
        if "init_generations" in vars(self):
            section["untrained_voice_score"] = self.voice_score(self.init_generations)
        return section
