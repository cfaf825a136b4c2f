"""Ranking a query against a search index: the query's columns, one matrix product per
kind, and an exact re-scoring of the best candidates.

Methods ``pinv``, ``embed`` and ``ridge`` rank by ``|cosine|``; ``token`` by how well the
query's concepts match each direction's standardised logits (:mod:`core.search.score`),
first keeping the ``PREFILTER`` rows whose mean query-token z-score is largest when the
index is bigger than that. Scores come from the index's (half-precision) rows, the
survivors' from float32 vectors read from the decompositions. :func:`best_scores` ranks many
queries (a significance null's random ones) with one pass over the index per batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from core.errors import SpecError
from core.search.embed import DEFAULT_METHOD, QueryTokens
from core.search.index import SearchIndex, exact_vectors
from core.search.product import index_product
from core.search.score import query_scores


def embed_query(index: SearchIndex, query: QueryTokens, method: str = DEFAULT_METHOD) -> Tensor:
    """The unit residual vector whose cosines a method reports ``[d_model]``."""
    x = index.embedder.embed(query.ids, query.weights, method)[0]
    n = x.norm()
    if not torch.isfinite(n) or n <= 0:
        raise SpecError("The query maps to the zero vector; try other words.")
    return x / n


@dataclass(frozen=True)
class Scores:
    """Scores of some index rows for one query: cosine, ranking score, antipodal flag."""

    rows: Int[Tensor, " m"]
    cosine: Float[Tensor, " m"]
    score: Float[Tensor, " m"]
    antipodal: Bool[Tensor, " m"]

    def take(self, sel: Tensor) -> Scores:
        """The rows ``sel`` (indices or mask) select."""
        return Scores(self.rows[sel], self.cosine[sel], self.score[sel], self.antipodal[sel])


def query_columns(
    index: SearchIndex, q: Float[Tensor, " d_model"], query: QueryTokens, method: str
) -> Float[Tensor, "d_model c"]:
    """What the index is multiplied by: ``q`` for the cosine methods; for ``token``, one
    column per spelling of the query's concepts (the mean centred ``W_U`` column of its
    tokens: a word of several tokens is matched by all of them), then ``q``.
    """
    if method != "token":
        return q[:, None]
    cols = index.embedder.centred_columns(query.ids)  # [d, m]
    sp = query.spelling_of
    n_sp = int(sp.max()) + 1
    mean = torch.zeros(len(sp), n_sp, dtype=cols.dtype)
    mean[torch.arange(len(sp)), sp] = 1.0
    mean = mean / mean.sum(0, keepdim=True)
    return torch.cat([cols @ mean, q[:, None]], dim=1)


def score_rows(
    index: SearchIndex,
    vectors: Float[Tensor, "m d_model"],
    rows: Int[Tensor, " m"],
    cols: Float[Tensor, "d_model c"],
    query: QueryTokens,
) -> Scores:
    """Score unit ``vectors`` (index ``rows``) against a query's ``cols``
    (:func:`query_columns`): one matrix product.
    """
    return _score_product(index, index_product(vectors, cols), rows, query)


def _score_product(
    index: SearchIndex, out: Float[Tensor, "c m"], rows: Int[Tensor, " m"], query: QueryTokens
) -> Scores:
    """:func:`score_rows` from the product ``out`` of the rows' vectors with the query's
    columns (:func:`~core.search.product.index_product`; the last column is the unit query vector).
    """
    cos = out[-1]
    if out.shape[0] == 1:
        return Scores(rows, cos, cos.abs(), cos < 0)
    zt = out[:-1] / index.logit_std[rows][None, :]
    score, anti = query_scores(
        zt,
        query.spelling_groups,
        len(query.concepts),
        index.tau_top[rows],
        index.tau_bottom[rows],
    )
    return Scores(rows, cos, score, anti)


#: Slack, in cosine, for half-precision scores before exact re-scoring.
_SLACK = 0.01


#: Above this many directions, ``token`` first keeps the rows whose mean query-token
#: z-score (one column, like a cosine) is largest, then scores only those in full.
PREFILTER = 4096


def _mean_column(index: SearchIndex, query: QueryTokens) -> Float[Tensor, "d_model 1"]:
    """The prefilter's column: the mean of the query's centred token columns."""
    cols = index.embedder.centred_columns(query.ids)
    return ((cols * query.weights[None, :].to(cols.dtype)).sum(1) / len(query.concepts))[:, None]


def _searched(index: SearchIndex, kinds: Sequence[str]) -> list[str]:
    """The index's kinds that ``kinds`` names, in index order."""
    return [k for k in index.kinds if k in kinds]


@dataclass(frozen=True)
class _Pass:
    """The searched rows of the index times some columns: ``out[:, j]`` is row
    ``rows[j]``'s product with each column (:func:`~core.search.product.index_product`).
    """

    out: Float[Tensor, "c n"]
    rows: Int[Tensor, " n"]


def _index_pass(
    index: SearchIndex, kinds: Sequence[str], cols: Float[Tensor, "d_model c"]
) -> _Pass:
    """Every searched row times ``cols``: one product per run of adjacent searched kinds
    (one in all when every kind is searched).
    """
    runs: list[list[int]] = []
    for k in _searched(index, kinds):
        a, b = index.spans[k]
        if runs and runs[-1][1] == a:
            runs[-1][1] = b
        else:
            runs.append([a, b])
    outs = [index_product(index.vectors[a:b], cols) for a, b in runs]
    rows = [torch.arange(a, b) for a, b in runs]
    if len(runs) == 1:
        return _Pass(outs[0], rows[0])
    return _Pass(torch.cat(outs, 1), torch.cat(rows))


def _scored(
    index: SearchIndex,
    out: Float[Tensor, "c2 n"],
    rows: Int[Tensor, " n"],
    query: QueryTokens,
    threshold: float,
    prefilter: bool,
) -> Scores:
    """The rows worth re-scoring and their scores, from the searched ``rows``' product
    ``out`` with the query's columns (:func:`query_columns`), followed, when the query
    ``prefilter``s, by :func:`_mean_column`.

    The prefilter keeps the rows passing the (approximate) ``|cosine|`` threshold with the
    largest ``|mean z|`` of the query, at most :data:`PREFILTER`; only those are scored.
    """
    if not prefilter:
        return _score_product(index, out, rows, query)
    cos, mean = out[-2], out[-1]
    if threshold > _SLACK:  # else every row passes: |cosine| >= a negative number
        keep = (cos.abs() >= threshold - _SLACK).nonzero()[:, 0]
        mean, kept = mean[keep], rows[keep]
    else:
        keep, kept = None, rows
    proxy = mean.abs() / index.logit_std[kept]
    if len(proxy) > PREFILTER:
        pick = proxy.topk(PREFILTER).indices
        keep = pick if keep is None else keep[pick]
    if keep is None:
        return _score_product(index, out[:-1], rows, query)
    return _score_product(index, out[:-1, keep], rows[keep], query)


def _candidates(allp: Scores, threshold: float, top: int | None) -> Scores:
    """The rows of ``allp`` (half-precision scores) worth re-scoring: those near the
    ``|cosine|`` threshold or above it, the ``2 top + 64`` best at most.
    """
    cand = allp.take(allp.cosine.abs() >= threshold - _SLACK)
    if top is not None and len(cand.rows) > 2 * top + 64:
        cand = cand.take(cand.score.topk(2 * top + 64).indices)
    return cand


def _rescored(
    index: SearchIndex,
    cand: Scores,
    vectors: Float[Tensor, "m d_model"],
    cols: Float[Tensor, "d_model c"],
    query: QueryTokens,
    threshold: float,
    top: int | None,
) -> Scores:
    """:func:`_candidates` ``cand`` re-scored from their float32 ``vectors``
    (:func:`~core.search.index.exact_vectors`): those with ``|cosine| >= threshold``, best
    first, at most ``top``.
    """
    exact = score_rows(index, vectors, cand.rows, cols, query)
    exact = exact.take(exact.cosine.abs() >= threshold)
    n = len(exact.rows) if top is None else min(top, len(exact.rows))
    return exact.take(exact.score.topk(n).indices)


def _searched_rows(index: SearchIndex, kinds: Sequence[str]) -> int:
    return sum(b - a for k, (a, b) in index.spans.items() if k in kinds)


def _prefilters(method: str, n_rows: int) -> bool:
    """Whether a query first keeps the ``PREFILTER`` rows (``token`` on a bigger index)."""
    return method == "token" and n_rows > PREFILTER


def _pass_columns(
    index: SearchIndex, query: QueryTokens, cols: Float[Tensor, "d_model c"], prefilter: bool
) -> Float[Tensor, "d_model c2"]:
    """The columns the whole index is multiplied by: the query's ``cols``, then the
    prefilter's :func:`_mean_column` when it ``prefilter``s. The survivors of the
    prefilter are scored from this same product: slicing it gives the values a product of
    the gathered rows would (one dot product per entry), without the gather.
    """
    return torch.cat([cols, _mean_column(index, query)], 1) if prefilter else cols


def rank(
    index: SearchIndex,
    query: QueryTokens,
    method: str,
    kinds: Sequence[str],
    threshold: float,
    top: int | None,
) -> tuple[Scores, int]:
    """Rows with ``|cosine| >= threshold``, best score first, at most ``top``; scores
    from float32 vectors. Returns the scores and how many directions were searched.
    """
    q = embed_query(index, query, method)
    cols = query_columns(index, q, query, method)
    n_rows = _searched_rows(index, kinds)
    prefilter = _prefilters(method, n_rows)
    p = _index_pass(index, kinds, _pass_columns(index, query, cols, prefilter))
    cand = _candidates(_scored(index, p.out, p.rows, query, threshold, prefilter), threshold, top)
    return _rescored(
        index, cand, exact_vectors(index, cand.rows), cols, query, threshold, top
    ), n_rows


#: Product entries (searched rows x columns) :func:`best_scores` computes at once: a
#: batch of queries takes columns until the next query's would pass this (64 MB of
#: float32 scores; at least one query per batch).
BATCH_ENTRIES = 1 << 24


def _batches(widths: Sequence[int], n_rows: int) -> list[tuple[int, int]]:
    """``[start, end)`` of consecutive queries whose ``widths`` (columns) times
    ``n_rows`` stay within :data:`BATCH_ENTRIES`.
    """
    out: list[tuple[int, int]] = []
    s0, used = 0, 0
    for i, w in enumerate(widths):
        if i > s0 and (used + w) * n_rows > BATCH_ENTRIES:
            out.append((s0, i))
            s0, used = i, 0
        used += w
    if widths:
        out.append((s0, len(widths)))
    return out


def best_scores(
    index: SearchIndex,
    queries: Sequence[QueryTokens],
    method: str,
    kinds: Sequence[str],
    threshold: float,
) -> Float[Tensor, " n"]:
    """Each query's best score: ``rank(..., top=1)``'s first score, ``-inf`` where no
    row passes the threshold.

    The same steps as :func:`rank`, but the pass over the whole index (the largest cost
    of a query, memory-bound) is one product for a batch of queries' columns side by
    side (:data:`BATCH_ENTRIES`) rather than one per query: a search null ranks 100
    random queries.
    """
    n_rows = _searched_rows(index, kinds)
    prefilter = _prefilters(method, n_rows)
    cols = [query_columns(index, embed_query(index, q, method), q, method) for q in queries]
    side = [_pass_columns(index, q, c, prefilter) for q, c in zip(queries, cols)]
    best = torch.full((len(queries),), -math.inf)
    for s0, s1 in _batches([c.shape[1] for c in side], n_rows):
        p = _index_pass(index, kinds, torch.cat(side[s0:s1], dim=1))
        ends = torch.tensor([0] + [c.shape[1] for c in side[s0:s1]]).cumsum(0).tolist()
        cands = [
            _candidates(
                _scored(index, p.out[e0:e1], p.rows, queries[j], threshold, prefilter),
                threshold,
                1,
            )
            for j, e0, e1 in zip(range(s0, s1), ends, ends[1:])
        ]
        # The batch's candidates read their float32 vectors in one go (each row's vector
        # is the same however many are read with it).
        union = torch.cat([c.rows for c in cands]).unique()
        vectors = exact_vectors(index, union)
        for j, cand in zip(range(s0, s1), cands):
            mine = vectors[torch.searchsorted(union, cand.rows)]
            top = _rescored(index, cand, mine, cols[j], queries[j], threshold, 1)
            if len(top.rows):
                best[j] = top.score[0]
    return best
