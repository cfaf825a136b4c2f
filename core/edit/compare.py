"""One matrix's singular directions before and after edits, matched by cosine.

Removing or scaling directions changes the order of the spectrum, and a fresh SVD may
flip any vector's sign, so directions are matched by the absolute cosine of their
token-side vectors rather than by index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from core.analysis import Analysis
from core.edit.rank_one import EDIT_KINDS, FIELDS, Edit, f64, rank_one_updates, token_vectors
from core.errors import SpecError
from core.model.fold import fold_like
from core.svd.decompose import dense_svd, factored_svd
from core.svd.project import token_signs


@dataclass(frozen=True)
class Match:
    """Where direction ``index`` of the original matrix went after the edits.

    ``after_index`` is the best match by absolute cosine among the edited matrix's
    non-zero directions (``None`` when it was removed); ``cosine`` is signed, so -1 means
    the recomputed SVD flipped its sign.
    """

    index: int
    s_before: float
    after_index: int | None
    s_after: float
    cosine: float


@dataclass(frozen=True)
class Comparison:
    """One matrix's directions before and after edits, and how they match up."""

    before: list[Any]
    after: list[Any]
    matches: list[Match]


def edited_component(
    analysis: Analysis, edits: Iterable[Edit], kind: str, layer: int, head: int | None
) -> tuple[Tensor, Tensor | None]:
    """The edited component under the analysis's processing, float64.

    Returns the factors ``(W_V [d_model, d_head], W_O' [d_head, d_model])`` for ``ov``
    and ``(W', None)`` for MLP kinds (``[d_model, d_mlp]``, ``mlp_out`` ``[d_mlp, d_model]``).
    """
    w, raw, m = analysis.weights, analysis.raw, analysis.meta
    mine = [e for e in edits if e.component == (kind, layer, head)]
    ups = rank_one_updates(analysis, mine)
    if kind == "ov":
        assert head is not None
        W_O = f64(raw.W_O[layer].reshape(m.n_heads * m.d_head, m.d_model))
        for u in ups:
            W_O = W_O + torch.outer(u.left, u.right)
        rows = slice(head * m.d_head, (head + 1) * m.d_head)
        return f64(w.W_V[layer, head]), W_O[rows]
    W = f64(w.matrix(kind, layer))
    for u in ups:
        d = torch.outer(u.left, u.right)  # on the stored matrix: fold it like the matrix
        W = W + (fold_like(raw, FIELDS[kind], d, layer) if w.processing == "post" else d)
    return W, None


def compare(
    analysis: Analysis,
    edits: Iterable[Edit],
    kind: str,
    layer: int,
    head: int | None = None,
    n: int = 10,
    k: int = 10,
) -> Comparison:
    """The first ``n`` directions of one matrix before and after ``edits``, matched.

    The edited matrix is decomposed afresh and signed by the cache's own rule
    (:func:`core.svd.project.token_signs`), so indices and signs can change; matching
    is by absolute cosine of the token-side vectors.
    """
    from core.query import Direction, directions

    if kind not in EDIT_KINDS:
        raise SpecError(f"Cannot compare {kind!r}; use one of {', '.join(EDIT_KINDS)}.")
    edits = list(edits)
    before = directions(analysis, kind, layer, head, n=n, k=k)
    A, B = edited_component(analysis, edits, kind, layer, head)
    if B is not None:
        _, S, T = factored_svd(A, B)
    else:
        U, S, V = dense_svd(A)
        T = U if kind in ("mlp_in", "mlp_gate") else V
    W_U = analysis.W_U  # read through settings.projection, as the cache was
    flip, t = token_signs(T.T.float().to(W_U.device), W_U, k, analysis.settings.vocab_chunk)
    tops = type(t)(t.top_idx.cpu(), t.top_val.cpu(), t.bottom_idx.cpu(), t.bottom_val.cpu())
    T = T * torch.where(flip.cpu(), -1.0, 1.0).double()[None, :]
    names = analysis.tokens

    def named(idx: Tensor, val: Tensor) -> list[tuple[str, str, float]]:
        return [(names.raw[int(i)], names.display[int(i)], float(v)) for i, v in zip(idx, val)]

    s0 = float(S[0]) if S.numel() else 0.0
    live = 1e-6 * max(s0, before[0].singular_value if before else 0.0) < S
    after = [
        Direction(
            j,
            float(S[j]),
            False,
            named(tops.top_idx[j], tops.top_val[j]),
            named(tops.bottom_idx[j], tops.bottom_val[j]),
        )
        for j in range(min(n, int(live.sum())))
    ]
    old = token_vectors(analysis, kind, layer, head, [d.index for d in before])
    cos = old.T @ T  # [n_before, r]
    cos = torch.where(live[None, :], cos, 0.0)
    matches = []
    for i, d in enumerate(before):
        j = int(cos[i].abs().argmax())
        ok = bool(live[j]) and abs(float(cos[i, j])) > 0.5
        matches.append(
            Match(
                d.index,
                d.singular_value,
                j if ok else None,
                float(S[j]) if ok else 0.0,
                float(cos[i, j]) if ok else 0.0,
            )
        )
    return Comparison(before, after, matches)
