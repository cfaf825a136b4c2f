"""Self-retrieval benchmark for query embeddings.

For each source direction, the query is its own top-``k`` tokens (equal weights, ids
used directly, so tokenization plays no part). A good embedding maps that query back
near the source. Metrics, over the sources:

* ``mean_cosine``: mean signed cosine between the embedded query and the source.
* ``recall@1`` / ``recall@10``: fraction of sources ranked first / in the first ten
  among every searched direction by the method's score (``|cosine|``, or the token-space
  score for ``token``; as :func:`core.search.engine.search` ranks), matched with the positive
  sign (an antipodal hit of the source counts as a miss). For ``token`` the mean cosine
  is that of its reported (``ridge``) vector.

The post reports about 0.5 cosine for ``pinv`` on this task.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from core.search.embed import METHODS
from core.search.engine import SearchIndex, default_kinds, exact_vectors
from core.search.score import concept_scores
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


def self_retrieval(
    index: SearchIndex,
    methods: Sequence[str] = METHODS,
    k: int = 10,
    kinds: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int = 0,
    batch: int = 512,
) -> list[RetrievalScore]:
    """Score each method on the self-retrieval task.

    Sources are every direction of ``kinds`` (default: the search defaults), or a seeded
    random ``sample`` of them; each is ranked against every direction of ``kinds``.
    """
    kinds = default_kinds(index) if kinds is None else tuple(kinds)
    rows = index.rows_for(kinds)
    pool = exact_vectors(index, rows)  # [N, d], float32
    if sample is not None and sample < len(rows):
        g = torch.Generator().manual_seed(seed)
        pick = torch.randperm(len(rows), generator=g)[:sample].sort().values
    else:
        pick = torch.arange(len(rows))
    src_rows = rows[pick]
    ids = source_tokens(index, src_rows, k)
    weights = torch.full(ids.shape, 1.0 / k)
    std = index.logit_std[rows]
    tau_top, tau_bottom = index.tau_top[rows], index.tau_bottom[rows]
    scores = []
    for method in methods:
        cos_all, r1, r10 = [], 0, 0
        step = batch if method != "token" else max(1, min(batch, 2**24 // (len(rows) * k)))
        for s in range(0, len(pick), step):
            b_ids, b_w, b_src = ids[s : s + step], weights[s : s + step], pick[s : s + step]
            x = index.embedder.embed(b_ids, b_w, method)
            x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            sims = x @ pool.T  # [b, N]
            own = sims.gather(1, b_src[:, None])[:, 0]
            if method == "token":
                cols = index.embedder.centred_columns(b_ids)  # [b, d, k]
                z = torch.einsum("nd,bdk->bnk", pool, cols) / std[None, :, None]
                groups = torch.arange(k).expand(len(b_ids), k)
                score, anti = concept_scores(z, groups, k, tau_top, tau_bottom)
            else:
                score, anti = sims.abs(), sims < 0
            own_score = score.gather(1, b_src[:, None])[:, 0]
            rank = (score > own_score[:, None]).sum(dim=1)  # 0 = first
            ok = ~anti.gather(1, b_src[:, None])[:, 0]
            r1 += int(((rank < 1) & ok).sum())
            r10 += int(((rank < 10) & ok).sum())
            cos_all.append(own)
        n = len(pick)
        scores.append(
            RetrievalScore(
                method=method,
                k=k,
                n_sources=n,
                n_searched=len(rows),
                mean_cosine=float(torch.cat(cos_all).mean()),
                recall_1=r1 / n,
                recall_10=r10 / n,
            )
        )
    return scores


# --------------------------------------------------------------------------- synthetic models


class NumberTokenizer:
    """A stand-in tokenizer for synthetic models: token ``i`` is the word ``w<i>``.

    Enough of the Hugging Face interface for :func:`core.svd.project.token_table` and query
    parsing (``w12, w7`` finds ids 12 and 7; with a leading space, ``d_vocab/2 + i``).
    """

    def __init__(self, d_vocab: int) -> None:
        self.d_vocab = d_vocab
        self.half = d_vocab // 2
        self.unk_token_id = None
        self.unk_token = None

    def __len__(self) -> int:
        return self.d_vocab

    def _text(self, i: int) -> str:
        return f"w{i}" if i < self.half else f" w{i - self.half}"

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self._text(i).replace(" ", "Ġ") for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self._text(int(i)) for i in ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        space = text.startswith(" ")
        word = text.strip()
        if word.startswith("w") and word[1:].isdigit() and int(word[1:]) < self.half:
            return [int(word[1:]) + (self.half if space else 0)]
        return []


def random_weights(
    n_layers: int,
    n_heads: int,
    d_model: int,
    d_mlp: int,
    d_vocab: int,
    seed: int = 0,
    name: str = "random",
    clusters: int = 0,
    decay: float = 0.0,
) -> Any:
    """GPT-2-initialised random weights (normal, std 0.02; untied ``W_U``), raw view.

    LayerNorm scales are ones, so ``post`` processing only centres. With ``clusters``,
    the unembedding is shaped like a trained one instead: each token's column is its
    cluster's centroid plus noise (tokens of a cluster share top-token lists, as words
    of a topic do), the spectrum falls by ``decay`` decades across ``d_model``, and
    ``W_E = W_U^T`` (tied).
    """
    from core.model.weights import ModelMeta, ModelWeights, hash_tensors

    g = torch.Generator().manual_seed(seed)
    d_head = d_model // n_heads

    def rnd(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    t: dict[str, Any] = dict(
        W_Q=rnd(n_layers, n_heads, d_model, d_head),
        W_K=rnd(n_layers, n_heads, d_model, d_head),
        W_V=rnd(n_layers, n_heads, d_model, d_head),
        W_O=rnd(n_layers, n_heads, d_head, d_model),
        W_in=rnd(n_layers, d_model, d_mlp),
        W_gate=None,
        W_out=rnd(n_layers, d_mlp, d_model),
        W_E=rnd(d_vocab, d_model),
        W_U=rnd(d_model, d_vocab),
        ln1_w=torch.ones(n_layers, d_model),
        ln2_w=torch.ones(n_layers, d_model),
        lnf_w=torch.ones(d_model),
    )
    if clusters:
        centroids = torch.randn(clusters, d_model, generator=g)
        label = torch.randint(0, clusters, (d_vocab,), generator=g)
        cols = centroids[label] + 0.6 * torch.randn(d_vocab, d_model, generator=g)
        cols = 0.02 * cols * torch.logspace(0, -decay, d_model)
        t["W_U"], t["W_E"] = cols.T.contiguous(), cols.contiguous()
    meta = ModelMeta(
        name=name,
        architecture="GPT2LMHeadModel",
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=n_heads,
        d_model=d_model,
        d_head=d_head,
        d_mlp=d_mlp,
        d_vocab=d_vocab,
        normalization="LN",
        gated=False,
        parallel_attn_mlp=False,
        weights_hash=hash_tensors(t),
    )
    return ModelWeights(meta=meta, processing="raw", **t)
