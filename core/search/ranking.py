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


def _product(vectors: Tensor, cols: Tensor) -> Tensor:
    """``(vectors @ cols)^T`` in float32, ``[c, m]``: one row per column, contiguous."""
    if vectors.dtype == torch.float32:
        return cols.T.float() @ vectors.T
    # cols^T vectors^T: for a few columns CPU kernels run this orientation about twice
    # as fast as vectors @ cols in bfloat16, and it leaves each column's scores
    # contiguous for the per-concept reductions.
    return (cols.T.to(vectors.dtype) @ vectors.T).float()


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
    return _score_product(index, _product(vectors, cols), rows, query)


def _score_product(
    index: SearchIndex, out: Float[Tensor, "c m"], rows: Int[Tensor, " m"], query: QueryTokens
) -> Scores:
    """:func:`score_rows` from the product ``out`` of the rows' vectors with the query's
    columns (:func:`_product`; the last column is the unit query vector).
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


def _prefilter_columns(
    index: SearchIndex, q: Float[Tensor, " d_model"], query: QueryTokens
) -> Float[Tensor, "d_model 2"]:
    """The prefilter's two columns: the mean of the query's centred token columns, and
    the unit query vector.
    """
    cols = index.embedder.centred_columns(query.ids)
    mean_col = (cols * query.weights[None, :].to(cols.dtype)).sum(1) / len(query.concepts)
    return torch.stack([mean_col, q], dim=1)


def _prefilter_rows(
    index: SearchIndex, products: dict[str, Tensor], threshold: float
) -> Int[Tensor, " n"]:
    """Rows passing the (approximate) threshold with the largest |mean z| of the query,
    from each kind's product ``[2, rows of the kind]`` with :func:`_prefilter_columns`
    (kinds in index order).
    """
    proxy, rows = [], []
    for k, out in products.items():
        a = index.spans[k][0]
        keep = (out[1].abs() >= threshold - _SLACK).nonzero()[:, 0]
        proxy.append(out[0, keep].abs() / index.logit_std[a + keep])
        rows.append(a + keep)
    p, r = torch.cat(proxy), torch.cat(rows)
    return r[p.topk(min(PREFILTER, len(p))).indices] if len(p) > PREFILTER else r


def _searched(index: SearchIndex, kinds: Sequence[str]) -> list[str]:
    """The index's kinds that ``kinds`` names, in index order."""
    return [k for k in index.kinds if k in kinds]


def _kind_products(
    index: SearchIndex, kinds: Sequence[str], cols: Float[Tensor, "d_model c"]
) -> dict[str, Tensor]:
    """Each searched kind's rows times ``cols``: one product ``[c, rows of the kind]`` per
    kind.
    """
    out = {}
    for k in _searched(index, kinds):
        a, b = index.spans[k]
        out[k] = _product(index.vectors[a:b], cols)
    return out


def _all_scores(index: SearchIndex, products: dict[str, Tensor], query: QueryTokens) -> Scores:
    """Every searched row's scores, from each kind's product with the query's columns."""
    parts = [
        _score_product(index, out, torch.arange(*index.spans[k]), query)
        for k, out in products.items()
    ]
    return Scores(*(torch.cat([getattr(p, f) for p in parts]) for f in Scores.__dataclass_fields__))


def _best(
    index: SearchIndex,
    allp: Scores,
    cols: Float[Tensor, "d_model c"],
    query: QueryTokens,
    threshold: float,
    top: int | None,
) -> Scores:
    """The rows of ``allp`` (half-precision scores) re-scored from float32 vectors: those
    with ``|cosine| >= threshold``, best first, at most ``top``.
    """
    cand = allp.take(allp.cosine.abs() >= threshold - _SLACK)
    if top is not None and len(cand.rows) > 2 * top + 64:
        cand = cand.take(cand.score.topk(2 * top + 64).indices)
    exact = score_rows(index, exact_vectors(index, cand.rows), cand.rows, cols, query)
    exact = exact.take(exact.cosine.abs() >= threshold)
    n = len(exact.rows) if top is None else min(top, len(exact.rows))
    return exact.take(exact.score.topk(n).indices)


def _searched_rows(index: SearchIndex, kinds: Sequence[str]) -> int:
    return sum(b - a for k, (a, b) in index.spans.items() if k in kinds)


def _prefilters(method: str, n_rows: int) -> bool:
    """Whether a query first keeps the ``PREFILTER`` rows (``token`` on a bigger index)."""
    return method == "token" and n_rows > PREFILTER


def _pass_columns(
    index: SearchIndex,
    q: Float[Tensor, " d_model"],
    query: QueryTokens,
    cols: Float[Tensor, "d_model c"],
    prefilter: bool,
) -> Tensor:
    """The columns the whole index is multiplied by: the prefilter's two, or ``cols``."""
    return _prefilter_columns(index, q, query) if prefilter else cols


def _scored(
    index: SearchIndex,
    products: dict[str, Tensor],
    cols: Float[Tensor, "d_model c"],
    query: QueryTokens,
    threshold: float,
    prefilter: bool,
) -> Scores:
    """The rows worth re-scoring and their scores, from each kind's product with
    :func:`_pass_columns`.
    """
    if prefilter:
        rows = _prefilter_rows(index, products, threshold)
        return score_rows(index, index.vectors[rows], rows, cols, query)
    return _all_scores(index, products, query)


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
    products = _kind_products(index, kinds, _pass_columns(index, q, query, cols, prefilter))
    allp = _scored(index, products, cols, query, threshold, prefilter)
    return _best(index, allp, cols, query, threshold, top), n_rows


#: Queries :func:`best_scores` multiplies by the index at once (bounds the products'
#: memory: a few columns per query, four bytes per row each).
BATCH = 50


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
    of a query, memory-bound) is one product for :data:`BATCH` queries' columns side by
    side rather than one per query: a search null ranks 100 random queries.
    """
    prefilter = _prefilters(method, _searched_rows(index, kinds))
    best = torch.full((len(queries),), -math.inf)
    for s0 in range(0, len(queries), BATCH):
        batch = queries[s0 : s0 + BATCH]
        qs = [embed_query(index, query, method) for query in batch]
        cols = [query_columns(index, q, query, method) for q, query in zip(qs, batch)]
        side = [
            _pass_columns(index, q, query, c, prefilter) for q, query, c in zip(qs, batch, cols)
        ]
        ends = torch.tensor([0] + [c.shape[1] for c in side]).cumsum(0).tolist()
        products = _kind_products(index, kinds, torch.cat(side, dim=1))
        for j, query in enumerate(batch):
            mine = {k: out[ends[j] : ends[j + 1]] for k, out in products.items()}
            allp = _scored(index, mine, cols[j], query, threshold, prefilter)
            top = _best(index, allp, cols[j], query, threshold, 1)
            if len(top.rows):
                best[s0 + j] = top.score[0]
    return best
