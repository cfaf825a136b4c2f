"""Self-retrieval benchmark for query embeddings.

For each source direction, the query is its own top-``k`` tokens, one concept per token
(ids used directly, so tokenization plays no part; :func:`source_query`). A good embedding maps that query back
near the source. Metrics, over the sources:

* ``mean_cosine``: mean signed cosine between the embedded query and the source.
* ``recall@1`` / ``recall@10``: fraction of sources ranked first / in the first ten
  among every searched direction by the live ranking :func:`core.search.engine.rank`
  (what ``python -m core search`` runs, threshold 0), matched with the positive sign (an
  antipodal hit of the source counts as a miss). For ``token`` the mean cosine is that of
  its reported (``ridge``) vector.

The post reports about 0.5 cosine for ``pinv`` on this task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from core.search.embed import METHODS, QueryTokens
from core.search.engine import SearchIndex, default_kinds, embed_query, exact_vectors, rank
from core.svd.project import project_topk


@dataclass(frozen=True)
class RetrievalScore:
    """Self-retrieval figures of one method."""

    method: str
    k: int
    n_sources: int
    n_searched: int
    mean_cosine: float
    recall_1: float
    recall_10: float

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "method": self.method,
            "k": self.k,
            "n_sources": self.n_sources,
            "n_searched": self.n_searched,
            "mean_cosine": self.mean_cosine,
            "recall@1": self.recall_1,
            "recall@10": self.recall_10,
        }


def source_tokens(index: SearchIndex, rows: Int[Tensor, " b"], k: int) -> Int[Tensor, "b k"]:
    """Top-``k`` token ids of the given index rows (cached when possible)."""
    out = torch.empty(len(rows), k, dtype=torch.long)
    todo: list[int] = []
    for j, row in enumerate(rows.tolist()):
        kind = index.kinds[int(index.kind_of[row])]
        res = index.results[kind]
        c, i = int(index.component[row]), int(index.index[row])
        if i < res.n_projected and k <= res.tops.top_idx.shape[1]:
            out[j] = res.tops.top_idx[c * res.n_projected + i, :k]
        else:
            todo.append(j)
    if todo:
        vecs = torch.stack(
            [
                index.results[index.kinds[int(index.kind_of[r])]].decomposition.directions[
                    int(index.component[r]), :, int(index.index[r])
                ]
                for r in rows[todo].tolist()
            ]
        )
        out[todo] = project_topk(vecs, index.embedder.W_U, k).top_idx
    return out


def source_query(index: SearchIndex, ids: Int[Tensor, " k"]) -> QueryTokens:
    """The query a source direction's top tokens make: one concept per token, as
    :func:`~core.search.embed.parse_query` reads ``"tok1, tok2, ..."`` when each token's
    text names only that token.
    """
    raw = index.tokens.raw
    toks = [int(i) for i in ids.tolist()]
    return QueryTokens(
        text=", ".join(raw[i] for i in toks),
        concepts=tuple(raw[i] for i in toks),
        concept_tokens=tuple((raw[i],) for i in toks),
        ids=ids.long(),
        weights=torch.ones(len(toks)),
        groups=torch.arange(len(toks)),
    )


def self_retrieval(
    index: SearchIndex,
    methods: Sequence[str] = METHODS,
    k: int = 10,
    kinds: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    sources: Int[Tensor, " s"] | None = None,
) -> list[RetrievalScore]:
    """Score each method on the self-retrieval task through the live ranking
    (:func:`core.search.engine.rank`, threshold 0, the first ten).

    Sources are ``sources`` (index rows), else every direction of ``kinds`` (default: the
    search defaults) or a seeded random ``sample`` of them; each is ranked against every
    direction of ``kinds``.
    """
    kinds = default_kinds(index) if kinds is None else tuple(kinds)
    rows = index.rows_for(kinds)
    if sources is not None:
        src_rows = sources.long()
    elif sample is not None and sample < len(rows):
        g = torch.Generator().manual_seed(seed)
        src_rows = rows[torch.randperm(len(rows), generator=g)[:sample].sort().values]
    else:
        src_rows = rows
    own = exact_vectors(index, src_rows)  # [s, d], unit, float32
    ids = source_tokens(index, src_rows, k)
    scores = []
    for method in methods:
        cos_sum, r1, r10 = 0.0, 0, 0
        for j, src in enumerate(src_rows.tolist()):
            qt = source_query(index, ids[j])
            cos_sum += float(embed_query(index, qt, method) @ own[j])
            ranked, _ = rank(index, qt, method, kinds, threshold=0.0, top=10)
            at = (ranked.rows == src).nonzero()[:, 0].tolist()
            # An antipodal hit of the source is the query matching its other end: a miss.
            if at and not bool(ranked.antipodal[at[0]]):
                r1 += at[0] == 0
                r10 += 1
        n = len(src_rows)
        scores.append(
            RetrievalScore(
                method=method,
                k=k,
                n_sources=n,
                n_searched=len(rows),
                mean_cosine=cos_sum / n,
                recall_1=r1 / n,
                recall_10=r10 / n,
            )
        )
    return scores
