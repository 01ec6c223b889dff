"""A deterministic synthetic corpus in two clearly different voices.

The fixture tokenizer is trained on it and the default LoRA data is drawn from it,
so nothing is downloaded. Sentences come from a small grammar of our own; a seeded
`random.Random` makes every build byte-identical.
"""

from __future__ import annotations

import random

VOICES = ("formal", "folksy")

_FORMAL = {
    "opener": [
        "It should be noted that",
        "We observe that",
        "Accordingly,",
        "In summary,",
        "It is therefore evident that",
        "Furthermore,",
    ],
    "subject": [
        "the committee",
        "the analysis",
        "the proposed method",
        "the present study",
        "the evidence",
        "the board of review",
    ],
    "verb": [
        "demonstrates",
        "indicates",
        "establishes",
        "substantiates",
        "requires",
        "considers",
    ],
    "object": [
        "a considerable improvement in efficiency",
        "the necessity of further examination",
        "a consistent pattern of results",
        "the adequacy of the current procedure",
        "a measurable reduction in error",
        "the significance of these findings",
    ],
    "closer": [
        "under the stated conditions.",
        "in accordance with prior work.",
        "with a high degree of confidence.",
        "as described in the preceding section.",
    ],
}

_FOLKSY = {
    "opener": [
        "Well, I reckon",
        "Shoot, y'all know",
        "Now listen here,",
        "Bless your heart,",
        "Truth be told,",
        "Down by the creek,",
    ],
    "subject": [
        "old Uncle Jeb",
        "my grandpappy",
        "that ornery mule",
        "the whole darn town",
        "your cousin Earl",
        "the hound dog",
    ],
    "verb": [
        "done fixed",
        "ain't never seen",
        "sure loves",
        "went and hollered at",
        "plumb forgot",
        "fetched up",
    ],
    "object": [
        "a mess of catfish",
        "the rickety old porch",
        "a big ol' pot of beans",
        "them tomatoes out back",
        "the pickup truck",
        "a jug of sweet tea",
    ],
    "closer": [
        "yesterday evenin'.",
        "and that's the honest truth.",
        "before supper, mind you.",
        "like it was nothin'.",
    ],
}

_GRAMMARS = {"formal": _FORMAL, "folksy": _FOLKSY}


def sentence(voice: str, rng: random.Random) -> str:
    """One sentence of `voice`, drawn with `rng`."""
    parts = _GRAMMARS[voice]
    slots = ("opener", "subject", "verb", "object", "closer")
    return " ".join(rng.choice(parts[slot]) for slot in slots)


# Shared by both voices, so a prompt made of a topic does not give the voice away.
TOPICS = [
    "the harvest",
    "the river",
    "the weather",
    "the town meeting",
    "the old bridge",
    "the county fair",
    "the new road",
    "the school",
    "the market",
    "the winter",
]


def prompt_for(topic: str) -> str:
    """The neutral opening every passage starts with; generation prompts use it too."""
    return f"On the matter of {topic}:"


def passage(voice: str, rng: random.Random, sentences: int = 2) -> str:
    """A topic opening followed by a few sentences of one voice."""
    body = " ".join(sentence(voice, rng) for _ in range(sentences))
    return f"{prompt_for(rng.choice(TOPICS))} {body}"


def corpus(voice: str, count: int, seed: int = 0) -> list[str]:
    """`count` passages of `voice`; the same arguments always give the same list."""
    if voice not in _GRAMMARS:
        raise ValueError(f"unknown voice {voice!r}; choose one of {', '.join(VOICES)}")
    rng = random.Random(f"{voice}:{seed}")
    return [passage(voice, rng, sentences=1) for _ in range(count)]


def mixed_corpus(count_per_voice: int, seed: int = 0) -> list[str]:
    """Both voices interleaved, for training the fixture tokenizer."""
    pairs = zip(
        corpus("formal", count_per_voice, seed),
        corpus("folksy", count_per_voice, seed),
        strict=False,
    )
    return [text for pair in pairs for text in pair]
