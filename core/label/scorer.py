"""The offline labeller's token-quality features and the fixed scorer that combines them.

A direction's top tokens read as one theme to a person (or to GPT-3, whose labels the
offline labeller is checked against) for more reasons than embedding coherence: a set of
common English words reads as "nouns" or "verbs", repeats in different cases
(``of, OF, Of``) as one word, and a set of numbers or of punctuation as "numbers" or
"punctuation marks". The offline score is the logit

``S = intercept + b_z * coherence_z + b_common * common_share + b_repeat * repeat_share``

where ``coherence_z`` is the embedding statistic's z against random sets
(:mod:`core.label.offline`), ``common_share`` the share of tokens whose Zipf word frequency
(the PyPI package ``wordfreq``) is at least ``COMMON_ZIPF`` (once per million words), and
``repeat_share`` the share of tokens that repeat another after cleaning and lower-casing.
The coefficients are fitted once, on named label files, and shipped as constants in
``core/label/data/scorer.json`` with their provenance; at run time nothing is fitted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from core.errors import ModelLoadError
from core.label.embed import clean_token, is_byte_token

__all__ = [
    "COMMON_ZIPF",
    "FEATURES",
    "SCORER_FILE",
    "Scorer",
    "TokenFeatures",
    "form_class",
    "load_scorer",
    "token_features",
    "zipf_frequency",
]

SCORER_FILE = Path(__file__).resolve().parent / "data" / "scorer.json"

#: Zipf frequency at or above which a token counts as a common word: once per million
#: words (Zipf = log10 of occurrences per billion words).
COMMON_ZIPF = 3.0

#: The scorer's features, in the order of its coefficients.
FEATURES: tuple[str, ...] = ("coherence_z", "common_share", "repeat_share")


def form_class(token: str) -> str | None:
    """``"number"`` for a cleaned token of digits (with any punctuation, no letters),
    ``"punctuation"`` for one of punctuation or symbols only, ``None`` otherwise (words,
    fragments, empty, byte and special tokens).
    """
    if not token or is_byte_token(token) or any(c.isalpha() for c in token):
        return None
    if any(c.isdigit() for c in token):
        return "number"
    return "punctuation" if not token.isspace() else None


def _wordfreq() -> Any:
    try:
        import wordfreq
    except ImportError as exc:
        raise ModelLoadError(
            "The offline labeller needs word frequencies; pip install wordfreq."
        ) from exc
    return wordfreq


@lru_cache(maxsize=200_000)
def zipf_frequency(token: str) -> float:
    """Zipf frequency of ``token`` in English (``wordfreq``; 0 for unseen strings).

    Raises:
        ModelLoadError: the package ``wordfreq`` is missing.
    """
    return float(_wordfreq().zipf_frequency(token, "en"))


@dataclass(frozen=True)
class TokenFeatures:
    """Token-quality features of one set of ``n`` tokens.

    Attributes:
        common_share: share with Zipf frequency at least :data:`COMMON_ZIPF`.
        repeat_share: share that repeat an earlier token after cleaning and lower-casing.
        word_frequency: mean Zipf frequency (the word-frequency baseline).
    """

    common_share: float
    repeat_share: float
    word_frequency: float


def token_features(tokens: Sequence[str]) -> TokenFeatures:
    """:class:`TokenFeatures` of raw tokens (leading-space markers are stripped first)."""
    n = len(tokens)
    if n == 0:
        return TokenFeatures(0.0, 0.0, 0.0)
    cleaned = [clean_token(t) for t in tokens]
    zipf = [zipf_frequency(c) if c else 0.0 for c in cleaned]
    return TokenFeatures(
        common_share=sum(1 for z in zipf if z >= COMMON_ZIPF) / n,
        repeat_share=1.0 - len({c.lower() for c in cleaned}) / n,
        word_frequency=sum(zipf) / n,
    )


@dataclass(frozen=True)
class Scorer:
    """A fixed linear logit over :data:`FEATURES` (module docstring).

    Attributes:
        intercept: the logit's constant.
        coefficients: one per name in :data:`FEATURES`, in that order.
        provenance: where the numbers came from (files, method, figures), for the record.
    """

    intercept: float
    coefficients: tuple[float, ...]
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if len(self.coefficients) != len(FEATURES):
            raise ValueError(f"a scorer needs {len(FEATURES)} coefficients, one per feature")

    def logit(self, coherence_z: float, feats: TokenFeatures) -> float:
        """The combined score ``S`` of one set."""
        x = (coherence_z, feats.common_share, feats.repeat_share)
        return self.intercept + sum(b * v for b, v in zip(self.coefficients, x))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "intercept": self.intercept,
            "coefficients": list(self.coefficients),
            "provenance": self.provenance,
        }


def load_scorer(path: Path = SCORER_FILE) -> Scorer:
    """The scorer stored at ``path`` (default: the shipped ``data/scorer.json``).

    Raises:
        ValueError: the file's features are not :data:`FEATURES`.
    """
    return _load(str(path))


@lru_cache(maxsize=4)
def _load(path: str) -> Scorer:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if tuple(data["features"]) != FEATURES:
        raise ValueError(f"{path}: features must be {list(FEATURES)}")
    return Scorer(
        intercept=float(data["intercept"]),
        coefficients=tuple(float(c) for c in data["coefficients"]),
        provenance=dict(data.get("provenance", {})),
    )
