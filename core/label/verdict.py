"""The offline labeller's verdict on one token set and the random-set null it is scored against."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxtyping import Float
from torch import Tensor

from core.label.scorer import TokenFeatures

__all__ = ["CoherenceScore", "NullDistribution"]


@dataclass(frozen=True)
class NullDistribution:
    """A statistic (the raw coherence, or the combined logit) of random token sets of one
    size.

    Attributes:
        size: tokens per random set.
        samples: the sorted statistic of each random set.
    """

    size: int
    samples: Float[Tensor, " s"]

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or self.samples.numel() < 2:
            raise ValueError("samples must be a 1-D tensor of at least two values")

    @property
    def mean(self) -> float:
        return float(self.samples.mean())

    @property
    def std(self) -> float:
        return max(float(self.samples.std()), 1e-6)

    def percentile(self, value: float) -> float:
        """Fraction of random sets below ``value`` (ties count half)."""
        below = float((self.samples < value).sum())
        ties = float((self.samples == value).sum())
        return (below + 0.5 * ties) / self.samples.numel()


@dataclass(frozen=True)
class CoherenceScore:
    """The offline verdict on one token set.

    Attributes:
        tokens: the tokens as given.
        kept: cleaned distinct entries that carried weight.
        weights: weight of each kept entry.
        word_fraction: share of ``tokens`` that are dictionary words.
        alpha_fraction: share of ``tokens`` that are alphabetic after cleaning.
        coherence: the raw statistic (module docstring).
        coherence_z: coherence in standard deviations above the random sets' mean.
        features: the token-quality features (common words, repeats, word frequency).
        logit: the combined score (:class:`~core.label.scorer.Scorer`).
        z: the combined score in standard deviations above the random sets' mean.
        percentile: share of random sets with a lower combined score.
        interpretable: ``z >= threshold_z``.
        label: nearest concept to the weighted centroid ("" when nothing was kept).
        label_similarity: cosine between centroid and ``label``.
        alternatives: the next-nearest concepts.
    """

    tokens: tuple[str, ...]
    kept: tuple[str, ...]
    weights: tuple[float, ...]
    word_fraction: float
    alpha_fraction: float
    coherence: float
    coherence_z: float
    features: TokenFeatures
    logit: float
    z: float
    percentile: float
    interpretable: bool
    label: str
    label_similarity: float
    alternatives: tuple[str, ...] = field(default=())

    @property
    def word_frequency(self) -> float:
        """Mean Zipf word frequency of the tokens (the word-frequency baseline)."""
        return self.features.word_frequency

    def __post_init__(self) -> None:
        if len(self.kept) != len(self.weights):
            raise ValueError("kept and weights must have the same length")

    def to_json(self) -> dict[str, Any]:
        return {
            "tokens": list(self.tokens),
            "interpretable": self.interpretable,
            "label": self.label,
            "z": round(self.z, 4),
            "percentile": round(self.percentile, 4),
            "coherence": round(self.coherence, 4),
            "coherence_z": round(self.coherence_z, 4),
            "logit": round(self.logit, 4),
            "word_fraction": round(self.word_fraction, 4),
            "common_share": round(self.features.common_share, 4),
            "repeat_share": round(self.features.repeat_share, 4),
            "word_frequency": round(self.features.word_frequency, 4),
            "label_similarity": round(self.label_similarity, 4),
            "alternatives": list(self.alternatives),
        }
