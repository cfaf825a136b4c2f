"""Ranking a query against a search index: the query's columns, one matrix product per
kind, and an exact re-scoring of the best candidates.

Methods ``pinv``, ``embed`` and ``ridge`` rank by ``|cosine|``; ``token`` by how well the
query's concepts match each direction's standardised logits (:mod:`core.search.score`),
first keeping the ``PREFILTER`` rows whose mean query-token z-score is largest when the
index is bigger than that. Scores come from the index's (half-precision) rows, the
survivors' from float32 vectors read from the decompositions.
"""

from __future__ import annotations

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
    out = _product(vectors, cols)
    cos = out[-1]
    if cols.shape[1] == 1:
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


def _prefilter(
    index: SearchIndex,
    q: Float[Tensor, " d_model"],
    query: QueryTokens,
    kinds: Sequence[str],
    threshold: float,
) -> Int[Tensor, " m"]:
    """Rows passing the (approximate) threshold with the largest |mean z| of the query."""
    cols = index.embedder.centred_columns(query.ids)
    mean_col = (cols * query.weights[None, :].to(cols.dtype)).sum(1) / len(query.concepts)
    two = torch.stack([mean_col, q], dim=1)
    proxy, rows = [], []
    for k in index.kinds:
        if k in kinds:
            a, b = index.spans[k]
            out = _product(index.vectors[a:b], two)
            keep = (out[1].abs() >= threshold - _SLACK).nonzero()[:, 0]
            proxy.append(out[0, keep].abs() / index.logit_std[a + keep])
            rows.append(a + keep)
    p, r = torch.cat(proxy), torch.cat(rows)
    return r[p.topk(min(PREFILTER, len(p))).indices] if len(p) > PREFILTER else r


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
    n_rows = sum(b - a for k, (a, b) in index.spans.items() if k in kinds)
    if method == "token" and n_rows > PREFILTER:
        rows = _prefilter(index, q, query, kinds, threshold)
        allp = score_rows(index, index.vectors[rows], rows, cols, query)
    else:
        parts = []
        for k in index.kinds:
            if k in kinds:
                a, b = index.spans[k]
                parts.append(score_rows(index, index.vectors[a:b], torch.arange(a, b), cols, query))
        allp = Scores(
            *(torch.cat([getattr(p, f) for p in parts]) for f in Scores.__dataclass_fields__)
        )
    cand = allp.take(allp.cosine.abs() >= threshold - _SLACK)
    if top is not None and len(cand.rows) > 2 * top + 64:
        cand = cand.take(cand.score.topk(2 * top + 64).indices)
    exact = score_rows(index, exact_vectors(index, cand.rows), cand.rows, cols, query)
    exact = exact.take(exact.cosine.abs() >= threshold)
    n = len(exact.rows) if top is None else min(top, len(exact.rows))
    return exact.take(exact.score.topk(n).indices), n_rows
