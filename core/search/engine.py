"""Semantic search over every singular direction of a model (the post's "SVD tracing").

A query (comma-separated words) is embedded into the residual stream
(:mod:`core.search.embed`) and compared by cosine with every cached token-side singular
vector of the chosen matrix kinds. Both signs count: a strongly negative cosine is an
*antipodal* match, where the query matches the direction's bottom end.

Methods ``pinv``, ``embed`` and ``ridge`` rank by ``|cosine|``. The default, ``token``,
ranks by how well the query's concepts match each direction's standardised logits
(:mod:`core.search.score`); it also reports, and can threshold on, the ``ridge`` cosine
(not the post's ``pinv`` one). Every hit's score is compared with the best scores random
queries of the same shape reach (:mod:`core.search.null`): ``p``, ``z`` and
``significant``.

All directions of a model are stacked once into one normalised ``[n_dirs, d_model]``
matrix (:class:`~core.search.index.SearchIndex`, built per
:class:`~core.analysis.Analysis`), grouped by kind, so a query is one matrix product
over the selected kinds' row ranges (a vector for the cosine methods; for ``token``, the
cosine vector plus one centred ``W_U`` column per query token).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from core.errors import SpecError
from core.search.embed import DEFAULT_METHOD, QueryTokens, check_method, parse_query
from core.search.index import (
    DEFAULT_KINDS,
    SearchIndex,
    build_index,
    check_kinds,
    default_kinds,
    exact_vectors,
    similarities,
)
from core.search.null import ALPHA, Null, frequency_bins, null_for
from core.search.ranking import (
    embed_query,
    query_columns,
    rank,
    score_rows,
)
from core.settings import HEAD_KINDS
from core.svd.project import project_topk

__all__ = [
    "DEFAULT_KINDS",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP",
    "SearchHit",
    "SearchIndex",
    "SearchResult",
    "build_index",
    "check_kinds",
    "default_kinds",
    "describe_rows",
    "embed_query",
    "exact_vectors",
    "query_columns",
    "rank",
    "score_rows",
    "search",
    "similarities",
]

#: The default minimum ``|cosine|``: none. Random three-word queries pass the post's 0.15
#: on both models tried, and real concept directions can fall below it; the
#: significance test (:mod:`core.search.null`) decides what is a match.
DEFAULT_THRESHOLD = 0.0
DEFAULT_TOP = 20


@dataclass(frozen=True)
class SearchHit:
    """One matching direction.

    ``sign`` is ``"positive"`` (the query matches the direction's top end) or
    ``"antipodal"`` (it matches the bottom end, ``end == "bottom"``: a negative cosine,
    or for the ``token`` method a match of the negated logits). ``tokens`` are that
    end's ``(raw, display, value)``, strongest first. ``score`` is what the hits are
    ranked by: ``|cosine|``, or for ``token`` the mean log-probability that each
    concept is among the matching end's top tokens (at most 0).
    """

    matrix: str
    layer: int
    head: int | None
    index: int
    singular_value: float
    cosine: float
    sign: str
    end: str
    degenerate: bool
    tokens: list[tuple[str, str, float]]
    score: float = 0.0
    p: float | None = None
    z: float | None = None
    significant: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON object; ``top`` holds the matching end's ``[token, value]``;
        ``p``, ``z`` and ``significant`` compare ``score`` with random queries of the
        same shape (``None`` where no null was computed).
        """
        return {
            "matrix": self.matrix,
            "layer": self.layer,
            "head": self.head,
            "index": self.index,
            "singular_value": self.singular_value,
            "cosine": self.cosine,
            "score": self.score,
            "p": self.p,
            "z": None if self.z is None or not math.isfinite(self.z) else self.z,
            "significant": self.significant,
            "sign": self.sign,
            "end": self.end,
            "degenerate": self.degenerate,
            "top": [[t, v] for t, _, v in self.tokens],
        }


@dataclass(frozen=True)
class SearchResult:
    """The hits of one query, best first, and how the query was read."""

    query: QueryTokens
    method: str
    threshold: float
    hits: list[SearchHit]
    n_searched: int
    null: Null | None = None

    @property
    def significant(self) -> list[SearchHit]:
        """The hits that are significant (all of them where no null was computed)."""
        return [h for h in self.hits if h.significant is not False]


def search(
    index: SearchIndex,
    query: str,
    method: str = DEFAULT_METHOD,
    threshold: float = DEFAULT_THRESHOLD,
    top: int | None = DEFAULT_TOP,
    kinds: Sequence[str] | None = None,
    k: int = 10,
    significance: bool = True,
    significant_only: bool = False,
) -> SearchResult:
    """Directions whose ``|cosine|`` with the query is at least ``threshold``, best first,
    at most ``top`` of them (``None``: all), each with ``k`` tokens of its matching end.

    With ``significance`` each hit gets ``p``, ``z`` and ``significant`` against random
    queries of the same shape (:func:`core.search.null.null_for`, computed once per shape);
    ``significant_only`` keeps only the significant hits (a prefix of the ranking: the
    p-value falls as the score rises).

    Raises:
        SpecError: empty or unknown query, unknown method or kind, bad threshold or top.
    """
    check_method(method)
    if not 0.0 <= threshold <= 1.0:
        raise SpecError(f"The threshold must be between 0 and 1, not {threshold}.")
    if top is not None and top < 1:
        raise SpecError(f"top must be at least 1, not {top}.")
    if k < 1:
        raise SpecError(f"k must be at least 1, not {k}.")
    kinds = default_kinds(index) if kinds is None else check_kinds(index, kinds)
    qt = parse_query(query, index.tokenizer, index.tokens.raw, index.embedder.d_vocab)
    sc, n = rank(index, qt, method, kinds, threshold, top)
    null = None
    if significance or significant_only:
        bins = frequency_bins(qt.concepts, index.word_zipf)
        null = null_for(index, len(qt.concepts), method, kinds, threshold, bins=bins)
        if significant_only and null is not None:
            sc = sc.take(sc.score > null.cut)
    hits = describe_rows(
        index, sc.rows.tolist(), sc.cosine.tolist(), k, sc.score.tolist(), sc.antipodal.tolist()
    )
    if null is not None:
        hits = [
            replace(h, p=null.p(h.score), z=null.z(h.score), significant=null.p(h.score) <= ALPHA)
            for h in hits
        ]
    return SearchResult(qt, method, threshold, hits, n, null)


def not_significant(result: SearchResult) -> str | None:
    """The sentence for a query whose hits reach the threshold but none significantly
    (``None`` otherwise): its best score and p against the random queries. Each edge adds
    how to see those hits anyway.
    """
    null = result.null
    if null is None or not result.hits or result.significant:
        return None
    best = max(result.hits, key=lambda h: h.score)
    p = min(h.p for h in result.hits if h.p is not None)
    frequent = "of equally frequent words " if null.bins is not None else ""
    return (
        f"No direction matches significantly: the best score, {best.score:.3f}, is reached or "
        f"beaten by the best hit of random {len(result.query.concepts)}-word queries "
        f"{frequent}often enough (p = {p:.3f} > {ALPHA:g} over {len(null.best)} random queries)."
    )


def describe_rows(
    index: SearchIndex,
    rows: Sequence[int],
    cosines: Sequence[float],
    k: int = 10,
    scores: Sequence[float] | None = None,
    antipodal: Sequence[bool] | None = None,
) -> list[SearchHit]:
    """Hits for index rows with the given cosines, with ``k`` tokens of the matching end
    (the bottom one where ``antipodal``, by default where the cosine is negative).
    """
    hits = []
    bottoms = [
        bool(antipodal[j]) if antipodal is not None else cos < 0 for j, cos in enumerate(cosines)
    ]
    ends = _ends(index, rows, k, bottoms)
    for j, (row, cos) in enumerate(zip(rows, cosines)):
        kind = index.kinds[int(index.kind_of[row])]
        i = int(index.index[row])
        bottom = bottoms[j]
        idx, val = ends[j]
        head = int(index.head[row])
        hits.append(
            SearchHit(
                matrix=kind,
                layer=int(index.layer[row]),
                head=head if kind in HEAD_KINDS else None,
                index=i,
                singular_value=float(index.singular_value[row]),
                cosine=float(cos),
                sign="antipodal" if bottom else "positive",
                end="bottom" if bottom else "top",
                degenerate=bool(index.degenerate[row]),
                score=float(scores[j]) if scores is not None else abs(float(cos)),
                tokens=[
                    (index.tokens.raw[int(t)], index.tokens.display[int(t)], float(v))
                    for t, v in zip(idx, val)
                ],
            )
        )
    return hits


def _ends(
    index: SearchIndex, rows: Sequence[int], k: int, bottoms: Sequence[bool]
) -> list[tuple[Tensor, Tensor]]:
    """Top (or, where ``bottoms``, bottom) ``k`` token ids and values of each index row:
    from the cached ends when they hold it, else projected, all such rows in one call
    (one at a time, they made the slow tail of the search latency).
    """
    out: list[tuple[Tensor, Tensor] | None] = [None] * len(rows)
    todo: list[tuple[int, Tensor]] = []
    for j, row in enumerate(rows):
        res = index.results[index.kinds[int(index.kind_of[row])]]
        c, i = int(index.component[row]), int(index.index[row])
        t = res.tops
        if i < res.n_projected and k <= t.top_idx.shape[1]:
            r = c * res.n_projected + i
            cached = (t.bottom_idx, t.bottom_val) if bottoms[j] else (t.top_idx, t.top_val)
            out[j] = (cached[0][r, :k], cached[1][r, :k])
        else:
            todo.append((j, res.decomposition.directions[c, :, i]))
    if todo:
        p = project_topk(torch.stack([v for _, v in todo]), index.embedder.W_U, k)
        for n, (j, _) in enumerate(todo):
            ends = (p.bottom_idx, p.bottom_val) if bottoms[j] else (p.top_idx, p.top_val)
            out[j] = (ends[0][n], ends[1][n])
    return [e for e in out if e is not None]
