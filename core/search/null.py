"""Significance of search hits: each hit's score against the best scores that random
queries of the same shape reach.

A search ranks thousands of directions, so its best hits score well even for a query of
random words. The null is that maximum: ``N_DRAWS`` random queries with as many concepts
as the real one, each concept a word drawn from :func:`word_pool` (whole-word tokens of
the model: a leading space, then at least three letters; under-trained tokens left out
where detected), ranked over the same kinds, method and ``|cosine|`` threshold.

Each random concept is as frequent in English as the query's concept it stands for: it
is drawn from the same bin of Zipf frequency (:data:`ZIPF_EDGES`; a bin with fewer than
:data:`MIN_BIN` words of the model is drawn from the whole pool). Common words reach
higher random bests: on SmolLM2-135M, single words of Zipf 5.5 or more beat a null drawn
uniformly from the pool (mostly rarer words) 37% of the time rather than 5%
(``BENCHMARKS.md``). Without ``wordfreq`` the draw is uniform. A hit scoring ``s`` gets

* ``p = (1 + #{null best >= s}) / (N_DRAWS + 1)``: the chance that a random query's *best*
  hit anywhere in the model scores at least ``s`` (a family-wise p-value: no further
  correction for the number of directions searched), and
* ``z = (s - mean) / std`` of the null bests;

it is *significant* when ``p <= ALPHA``. By construction a random query's best hit is
significant about ``ALPHA`` of the time.

A null depends on the model, the processing, the method, the number of concepts and
their frequency bins, the kinds and the threshold; it is computed once and saved as a small derived part of the
cache entry (:func:`core.cache.parts.save_part`), and kept in memory on the index.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from core.search.embed import QueryTokens, parse_query
from core.search.index import SearchIndex
from core.svd.tokens import english_zipf

#: Random queries per null.
N_DRAWS = 100
#: The significance level: hits with ``p <= ALPHA`` are significant.
ALPHA = 0.05
#: Seed of the random queries (a null is the same every time it is computed).
SEED = 0
#: Shortest word (letters after the leading space) a random query draws.
MIN_LETTERS = 3
#: Zipf frequencies (:func:`core.svd.tokens.english_zipf`) that bound the bins a random
#: concept is drawn from (:func:`zipf_bin`): bin ``i`` holds the words with
#: ``ZIPF_EDGES[i-1] <= zipf < ZIPF_EDGES[i]``
#: (an unlisted word has 0; "the" about 7.7, "water" 5.4, "fire" 5.1, "kidney" 3.9).
ZIPF_EDGES = (2.5, 4.0, 5.0, 5.5)
#: A bin with fewer of the model's whole words than this is drawn from the whole pool.
MIN_BIN = 20


@dataclass(frozen=True)
class Null:
    """The best score of each of ``len(best)`` random queries of one shape.

    Attributes:
        method: the query method.
        n_concepts: concepts per random query.
        threshold: the ``|cosine|`` threshold the ranking applied.
        kinds: the kinds searched.
        best: each random query's best score ``[n]``, ascending (``-inf`` where no
            direction reached the threshold).
        bins: the frequency bin each random concept was drawn from, sorted
            (:func:`frequency_bins`); ``None``: drawn from the whole pool.
    """

    method: str
    n_concepts: int
    threshold: float
    kinds: tuple[str, ...]
    best: Float[Tensor, " n"]
    bins: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.best.ndim != 1 or len(self.best) == 0:
            raise ValueError("best must be a non-empty 1-d tensor")

    def p(self, score: float) -> float:
        """Share of random queries whose best hit scores at least ``score`` (add-one)."""
        return (1 + int((self.best >= score).sum())) / (len(self.best) + 1)

    def z(self, score: float) -> float:
        """``score`` in standard deviations of the null bests above their mean."""
        finite = self.best[torch.isfinite(self.best)].double()
        if len(finite) < 2:
            return math.nan
        sd = float(finite.std())
        return (score - float(finite.mean())) / sd if sd > 0 else math.nan

    @property
    def cut(self) -> float:
        """The least score that is significant: the best score the top ``ALPHA`` share of
        random queries reach (a hit needs strictly more than all but that share).
        """
        n = len(self.best)
        # p <= ALPHA  <=>  #{best >= s} <= ALPHA (n + 1) - 1
        allowed = math.floor(ALPHA * (n + 1) - 1 + 1e-9)
        if allowed < 0:
            return math.inf
        return float(self.best[n - 1 - allowed]) if allowed < n else -math.inf


def word_pool(raw: Sequence[str], trained: Tensor | None = None) -> list[int]:
    """Ids of whole-word tokens: a leading space, then ``MIN_LETTERS`` or more letters
    (trained ones only, where ``trained`` says). Falls back to every alphabetic token
    when the vocabulary has fewer than 20 such.
    """
    keep = [
        i
        for i, t in enumerate(raw)
        if t.startswith(" ")
        and len(t) > MIN_LETTERS
        and t[1:].isalpha()
        and (trained is None or bool(trained[i]))
    ]
    if len(keep) >= 20:
        return keep
    return [i for i, t in enumerate(raw) if t.strip().isalpha()]


def zipf_bin(text: str, zipf: float | None = None) -> int:
    """The :data:`ZIPF_EDGES` bin of ``text``'s English frequency (0 to ``len(ZIPF_EDGES)``);
    ``zipf``: that frequency, where the caller knows it already.

    Raises:
        ValueError: the package ``wordfreq`` is missing.
    """
    return bisect.bisect_right(ZIPF_EDGES, english_zipf(text) if zipf is None else zipf)


def words_by_bin(raw: Sequence[str], pool: Sequence[int]) -> dict[int, list[int]]:
    """The ``pool`` token ids grouped by the :func:`zipf_bin` of their text (bins with no
    word are absent).

    Raises:
        ValueError: the package ``wordfreq`` is missing.
    """
    out: dict[int, list[int]] = {}
    for i in pool:
        out.setdefault(zipf_bin(raw[i]), []).append(i)
    return out


@dataclass(frozen=True)
class DrawPool:
    """The words random queries are drawn from: :func:`word_pool`'s ids and, where
    ``wordfreq`` is installed and it was asked for, :func:`words_by_bin` of them (``None``
    otherwise). Both depend on the vocabulary alone, so an index computes them once
    (:func:`null_for`); grouping the 30,000 words of SmolLM2-135M by frequency took
    about a quarter of a fresh null.
    """

    ids: list[int]
    by_bin: dict[int, list[int]] | None


def draw_pool(raw: Sequence[str], trained: Tensor | None = None, binned: bool = True) -> DrawPool:
    """:class:`DrawPool` of the vocabulary ``raw`` (``binned``: with the frequency bins,
    when ``wordfreq`` is installed).
    """
    ids = word_pool(raw, trained)
    if not binned:
        return DrawPool(ids, None)
    try:
        return DrawPool(ids, words_by_bin(raw, ids))
    except ValueError:  # no wordfreq: the draw is uniform (frequency_bins gives None)
        return DrawPool(ids, None)


def frequency_bins(
    concepts: Sequence[str], known: Callable[[str], float | None] | None = None
) -> tuple[int, ...] | None:
    """The :func:`zipf_bin` of each concept, sorted (the null depends on the bins, not on
    their order); ``None`` without ``wordfreq``. ``known``: a concept's frequency where a
    memo holds it (:meth:`core.search.memo.MemoTokenizer.zipf`), else ``None``.
    """
    try:
        return tuple(sorted(zipf_bin(c, None if known is None else known(c)) for c in concepts))
    except ValueError:
        return None


def random_queries(
    raw: Sequence[str],
    tokenizer: object,
    d_vocab: int,
    n_concepts: int,
    draws: int,
    seed: int = SEED,
    trained: Tensor | None = None,
    bins: Sequence[int] | None = None,
    pool: DrawPool | None = None,
) -> list[QueryTokens]:
    """``draws`` random queries of ``n_concepts`` distinct pool words each, parsed as a
    typed query would be (so each word gets the spellings a real concept gets). With
    ``bins`` (one per concept, :func:`frequency_bins`) each concept is drawn from the pool
    words of its frequency bin, or from the whole pool where that bin has fewer than
    :data:`MIN_BIN`. ``pool``: :func:`draw_pool` of ``raw`` and ``trained``, when the
    caller has it already.
    """
    if pool is None:
        pool = draw_pool(raw, trained, binned=bins is not None)
    by_bin = pool.by_bin
    pool_ids = pool.ids
    if not pool_ids:
        raise ValueError("the vocabulary has no alphabetic token to draw random queries from")
    g = torch.Generator().manual_seed(seed)
    out = []
    if bins is None:
        for _ in range(draws):
            pick = torch.randperm(len(pool_ids), generator=g)[: min(n_concepts, len(pool_ids))]
            text = ", ".join(raw[pool_ids[int(j)]].strip() for j in pick)
            out.append(parse_query(text, tokenizer, raw, d_vocab, words=frozenset()))
        return out
    if len(bins) != n_concepts:
        raise ValueError(f"bins names {len(bins)} concepts, not {n_concepts}")
    if by_bin is None:
        by_bin = words_by_bin(raw, pool_ids)
    sources = [by_bin.get(b, []) if len(by_bin.get(b, [])) >= MIN_BIN else pool_ids for b in bins]
    for _ in range(draws):
        words: list[int] = []
        for src in sources:
            # Distinct words: the first of a random order that is not taken yet.
            order = torch.randperm(len(src), generator=g)
            free = [src[int(j)] for j in order[: len(words) + 1] if src[int(j)] not in words]
            if free:
                words.append(free[0])
        text = ", ".join(raw[i].strip() for i in words)
        out.append(parse_query(text, tokenizer, raw, d_vocab, words=frozenset()))
    return out


def _part_name(
    method: str,
    n_concepts: int,
    kinds: Sequence[str],
    threshold: float,
    bins: Sequence[int] | None,
) -> str:
    freq = "" if bins is None else "-f" + "".join(str(b) for b in bins)
    return f"searchnull-{method}-{n_concepts}-{'-'.join(kinds)}-t{round(threshold * 1e4)}{freq}"


def index_pool(index: SearchIndex) -> DrawPool:
    """The :class:`DrawPool` of ``index``'s vocabulary, computed on first use and kept in
    its memo (every null of the index draws from it).
    """
    if "pool" not in index.memo:
        index.memo["pool"] = draw_pool(index.tokens.raw, index.tokens.trained)
    return index.memo["pool"]


#: Guards the creation of each index's per-shape locks.
_LOCKS_GUARD = threading.Lock()


def _shape_lock(index: SearchIndex, key: object) -> threading.Lock:
    # A query and the background warm-up (core.search.warm) asking for one shape at once
    # compute it once: the second waits and reads the first's.
    with _LOCKS_GUARD:
        locks = index.memo.setdefault("null_locks", {})
        return locks.setdefault(key, threading.Lock())


def null_for(
    index: SearchIndex,
    n_concepts: int,
    method: str,
    kinds: Sequence[str],
    threshold: float,
    draws: int | None = None,
    bins: Sequence[int] | None = None,
) -> Null | None:
    """The null of one query shape: from the index's memo, else its cache part, else
    computed (``draws`` rankings of the whole index, default :data:`N_DRAWS`) and saved;
    ``None`` when the vocabulary has no word to draw random queries from. ``bins``: the
    query's :func:`frequency_bins` (``None``: concepts drawn from the whole pool).
    """
    draws = N_DRAWS if draws is None else draws
    kinds = tuple(kinds)
    bins = None if bins is None else tuple(sorted(bins))
    key = (method, n_concepts, kinds, round(threshold, 6), draws, bins)
    if key in index.nulls:
        return index.nulls[key]
    with _shape_lock(index, key):
        if key in index.nulls:
            return index.nulls[key]
        null = _computed(index, n_concepts, method, kinds, threshold, draws, bins)
        if null is not None:
            index.nulls[key] = null
        return null


def _computed(
    index: SearchIndex,
    n_concepts: int,
    method: str,
    kinds: tuple[str, ...],
    threshold: float,
    draws: int,
    bins: tuple[int, ...] | None,
) -> Null | None:
    from core.search.ranking import best_scores

    name = _part_name(method, n_concepts, kinds, threshold, bins)
    extra: dict[str, object] = {
        "draws": draws,
        "seed": SEED,
        "min_letters": MIN_LETTERS,
        "threshold": threshold,
    }
    if bins is not None:
        extra |= {"zipf_edges": list(ZIPF_EDGES), "min_bin": MIN_BIN}
    stored = index.store.load(name, extra) if index.store is not None else None
    if stored is not None and stored.get("best") is not None and len(stored["best"]) == draws:
        best = stored["best"].float()
    else:
        pool = index_pool(index)
        if not pool.ids:
            return None
        queries = random_queries(
            index.tokens.raw,
            index.tokenizer,
            index.embedder.d_vocab,
            n_concepts,
            draws,
            SEED,
            index.tokens.trained,
            bins,
            pool,
        )
        best = best_scores(index, queries, method, kinds, threshold).sort().values
        if index.store is not None:
            index.store.save(name, {"best": best}, extra)
    return Null(method, n_concepts, threshold, kinds, best, bins)
