"""The default voice scorer: stylometric similarity of generations to reference texts.

Two frequency profiles are compared with cosine similarity and averaged: character
3-grams (spelling, contractions, punctuation habits) and words (function words and
vocabulary). Counts are non-negative, so the score lies in [0, 1]: identical text gives
1.0, nothing in common or empty generations give 0.0. Plug your own scorer with
`--voice-scorer module:callable`, a function (generations, references) -> float.
"""

from __future__ import annotations

import importlib
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Callable

from lora_harness.core.errors import InputError

_WORD = re.compile(r"[\w']+")


def char_profile(texts: list[str], n: int = 3) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        padded = f" {text.lower()} "
        counts.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return counts


def word_profile(texts: list[str]) -> Counter:
    counts: Counter = Counter()
    for text in texts:
        counts.update(_WORD.findall(text.lower()))
    return counts


def cosine(a: Counter, b: Counter) -> float:
    if not a or not b:
        return 0.0
    dot = sum(value * b[key] for key, value in a.items() if key in b)
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return max(0.0, min(1.0, dot / norm)) if norm else 0.0


def stylometric_score(generations: list[str], references: list[str]) -> float:
    """Mean of character-3-gram and word cosine similarity; 0.0 for empty generations."""
    texts = [t for t in generations if t.strip()]
    references = [t for t in references if t.strip()]
    if not texts or not references:
        return 0.0
    parts = [cosine(char_profile(texts), char_profile(references))]
    words, reference_words = word_profile(texts), word_profile(references)
    if words or reference_words:  # texts of punctuation alone have no word profile
        parts.append(cosine(words, reference_words))
    return round(sum(parts) / len(parts), 6)


def bootstrap_spread(scorer, generations: list[str], references: list[str], rounds=200) -> float:
    """Standard error of `scorer` over these generations, by resampling them with replacement.

    The score of a handful of sampled generations is itself noisy; this measures how much,
    so a drop is judged against the scorer's own spread rather than a constant.
    """
    texts = list(generations)
    if len(texts) < 2:
        return 0.0
    rng = random.Random(0)  # deterministic: the same generations give the same spread
    scores = [scorer([rng.choice(texts) for _ in texts], references) for _ in range(rounds)]
    return statistics.pstdev(scores)


DEFAULT_SCORER = "lora_harness.text.voice:stylometric_score"


def load_scorer(spec: str | None) -> Callable[[list[str], list[str]], float]:
    """`module:callable` -> the callable, with a one-line error when it cannot be found."""
    spec = spec or DEFAULT_SCORER
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise InputError(f"--voice-scorer {spec!r} must look like module:callable")
    try:
        scorer = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # the user's module may fail to import in any way
        raise InputError(
            f"--voice-scorer {spec}: cannot import it ({exc.__class__.__name__}: {exc}); "
            "check the module path and that the module imports"
        )
    if not callable(scorer):
        raise InputError(f"--voice-scorer {spec} is not callable")
    return scorer
