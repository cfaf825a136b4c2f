"""Token-space scoring for semantic search (the ``token`` method).

A residual direction ``v`` has logits ``v @ W_U`` over the vocabulary. Standardised
over the vocabulary they are z-scores, ``z_i = v . (u_i - mean_u) / std_v`` with
``std_v^2 = v G_c v^T / d_vocab`` (``G_c`` the centred ``W_U W_U^T``), so one token's
z-score in every direction is one column of a matrix product with the stacked index,
and ``std_v`` is precomputed per direction.

A query's concepts are matched directly against those z-scores: a concept scores the
best z of its spellings (alternatives; a spelling of several tokens scores the mean z
of its tokens, i.e. its mean centred ``W_U`` column), and the direction's score is the
mean over concepts of ``log sigmoid((z - tau) / s)``, a soft "is this concept among the
direction's top tokens" with ``tau`` the z of the direction's ``TOP_TOKENS``-th highest
logit (read from the cached projections; the Gaussian value where they are missing:
trained logits are heavy-tailed, so a fixed Gaussian cut lets many directions pass
every query token and ties them). Concepts must all match (a mean of
log-probabilities), unlike a dot product, where one very strong token can carry a
direction that ignores the rest of the query. The antipodal score uses ``-z``.
"""

from __future__ import annotations

import functools
import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

#: The "top end" a query token should fall in: this many tokens of the vocabulary.
TOP_TOKENS = 10
#: Softness of the membership test, in standard deviations of the logits.
SOFTNESS = 0.3


@functools.lru_cache(maxsize=64)
def top_z(d_vocab: int, top: int = TOP_TOKENS) -> float:
    """The z-score above which a Gaussian logit is in the top ``top`` of ``d_vocab``."""
    p = min(max(top / d_vocab, 1e-12), 0.5)
    return math.sqrt(2.0) * float(torch.erfinv(torch.tensor(1.0 - 2.0 * p, dtype=torch.float64)))


def logit_std(
    vectors: Float[Tensor, "n d_model"],
    gc_root: Float[Tensor, "d_model d_model"],
    d_vocab: int,
    chunk: int = 8192,
) -> Float[Tensor, " n"]:
    """Standard deviation over the vocabulary of each unit vector's logits ``[n]``."""
    out = torch.empty(vectors.shape[0])
    for a in range(0, vectors.shape[0], chunk):
        out[a : a + chunk] = (vectors[a : a + chunk].float() @ gc_root.float()).norm(dim=1)
    return (out / math.sqrt(d_vocab)).clamp_min(1e-12)


def query_scores(
    zt: Float[Tensor, "m n"],
    groups: Int[Tensor, " m"],
    n_groups: int,
    tau_top: Float[Tensor, " n"],
    tau_bottom: Float[Tensor, " n"],
) -> tuple[Float[Tensor, " n"], Bool[Tensor, " n"]]:
    """Scores of directions from one query's token z-scores, the one scorer of search.

    Args:
        zt: z-score of each query spelling ``m`` (a token, or the mean of a multi-token
            word's tokens) in each direction ``n``, transposed so each row is contiguous
            (a loop over the few concepts beats a scatter).
        groups: the concept of each spelling (``0 .. n_groups-1``).
        n_groups: how many concepts the query has.
        tau_top: per direction, the z of its ``TOP_TOKENS``-th highest logit.
        tau_bottom: per direction, minus the z of its ``TOP_TOKENS``-th lowest logit.

    Returns:
        ``(score, antipodal)``: the better of the positive and antipodal scores (a mean
        log-probability, at most 0) and whether it is the antipodal one.
    """
    sel = [(groups == g).nonzero()[:, 0] for g in range(n_groups)]
    hi = torch.stack([zt[i].amax(0) for i in sel])  # [G, n]
    lo = torch.stack([zt[i].amin(0) for i in sel])
    pos = torch.nn.functional.logsigmoid((hi - tau_top) / SOFTNESS).mean(0)
    neg = torch.nn.functional.logsigmoid((-lo - tau_bottom) / SOFTNESS).mean(0)
    anti = neg > pos
    return torch.where(anti, neg, pos), anti
