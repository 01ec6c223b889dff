"""Generate from fixed prompts with the right stop set, through mlx-lm's own generation.

The stop set is the union of the tokenizer's EOS, every id in generation_config.json's
`eos_token_id`, and the chat template's end-of-turn token: a model trained on chat data
ends turns with <|im_end|>, and stopping only at <|endoftext|> is how literal special
tokens end up in the output (QwenLM #1064, #927).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import mlx.core as mx

from lora_harness.core.declared import setting
from lora_harness.core.validation import Rule

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|eom_id|>")


@dataclass
class GenerationSettings:
    """Where prompts, references and the voice baseline come from (CLI flags)."""

    prompts_path: str | None = None
    references_path: str | None = None
    scorer: str | None = None
    tolerance: float | None = setting(
        None,
        "how far below its baseline the voice score may fall",
        Rule(float, minimum=0, maximum=1, hint="voice scores lie in [0, 1]"),
        default_text="2.33 x the scorer's bootstrap spread on this run's generations",
    )
    baseline_path: str | None = None
    max_tokens: int = setting(
        48,
        "tokens per generation; fewer keep a real model's run short on a CPU",
        Rule(int, minimum=1, hint="tokens per generation, e.g. 48"),
    )
    seed: int = 0


@dataclass
class Generation:
    prompt: str
    mode: str  # greedy | sampled
    text: str
    tokens: list[int]
    stopped: bool  # ended at a stop token rather than the length limit
    prompt_format: str = "plain"  # plain | chat (the tokenizer's chat template)

    def to_dict(self) -> dict:
        return asdict(self)


def stop_token_ids(tokenizer, model_path: Path | None) -> set[int]:
    stops = set(tokenizer.eos_token_ids)
    config_path = model_path / "generation_config.json" if model_path else None
    if config_path and config_path.exists():
        eos = json.loads(config_path.read_text()).get("eos_token_id")
        stops.update([eos] if isinstance(eos, int) else eos or [])
    template = getattr(tokenizer, "chat_template", None) or ""
    vocab = tokenizer.get_vocab()
    stops.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab and t in template)
    return stops


def special_literals(tokenizer) -> list[str]:
    """Text forms of every special token, which must never appear in decoded output."""
    names = set(getattr(tokenizer, "all_special_tokens", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    names.update(t.content for t in added.values() if getattr(t, "special", False))
    return sorted(n for n in names if n)


def encode_prompt(tokenizer, prompt: str, prompt_format: str):
    """The prompt as the model meets it: the text itself, or a user turn of the chat template
    with the assistant's turn opened (what mlx_lm.generate sends an instruct model)."""
    if prompt_format != "chat":
        return prompt
    messages = [{"role": "user", "content": prompt}]
    return list(tokenizer.apply_chat_template(messages, add_generation_prompt=True))


def generate_all(
    model, tokenizer, prompts, stops, max_tokens=48, seed=0, prompt_format="plain"
) -> list[Generation]:
    """Greedy and seeded-sampled continuations of every prompt (`prompt_format`: plain|chat)."""
    from mlx_lm.sample_utils import make_sampler

    for token_id in stops:
        tokenizer.add_eos_token(str(token_id))
    was_training = model.training
    model.eval()
    results = []
    for mode, temperature in (("greedy", 0.0), ("sampled", 0.8)):
        sampler = make_sampler(temp=temperature)
        for index, prompt in enumerate(prompts):
            mx.random.seed(seed + index)
            encoded = encode_prompt(tokenizer, prompt, prompt_format)
            generation = _one(model, tokenizer, encoded, mode, sampler, max_tokens)
            generation.prompt, generation.prompt_format = prompt, prompt_format
            results.append(generation)
    if was_training:
        model.train()
    return results


def _one(model, tokenizer, prompt, mode, sampler, max_tokens) -> Generation:
    from mlx_lm.generate import stream_generate

    pieces, tokens, finish = [], [], None
    for response in stream_generate(
        model, tokenizer, prompt, max_tokens=max_tokens, sampler=sampler
    ):
        pieces.append(response.text)
        if response.finish_reason is None or response.finish_reason == "length":
            tokens.append(int(response.token))
        finish = response.finish_reason
    return Generation(prompt, mode, "".join(pieces).strip(), tokens, finish == "stop")


def repeated_ngram_share(tokens: list[int], n: int = 4) -> float:
    """Share of n-grams that repeat an earlier one: 0 for varied text, near 1 for loops."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)
