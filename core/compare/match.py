"""Match one component's directions between two models that share a tokenizer.

Residual-stream bases need not agree between two training runs (or two checkpoints of
one run), but the vocabulary does: each direction is compared through its token-space
image ``W_U^T v`` (each model's own ``W_U``), by absolute cosine, since a singular
vector's sign is arbitrary. Directions are paired by an optimal assignment
(:func:`scipy.optimize.linear_sum_assignment`) that maximises the summed absolute
cosine; the subspaces of the top ``k`` directions are compared by principal angles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.errors import SpecError
from core.query import check_component, kind_result

#: A pair whose absolute cosine is below this is reported as unmatched: the direction
#: has no counterpart in the other model.
UNMATCHED_BELOW = 0.9


def check_same_tokenizer(a: Analysis, b: Analysis) -> None:
    """:class:`SpecError` unless ``a`` and ``b`` have the same vocabulary, token by token."""
    if a.tokens.raw != b.tokens.raw:
        raise SpecError(
            f"{a.meta.name} and {b.meta.name} do not share a tokenizer "
            f"({a.meta.d_vocab:,} and {b.meta.d_vocab:,} tokens, not the same strings); "
            "compare checkpoints of one model family, whose token spaces are the same."
        )


def token_images(
    analysis: Analysis, kind: str, layer: int, head: int | None, n: int | None = None
) -> Float[Tensor, "n d_vocab"]:
    """Unit-norm token-space images ``W_U^T v_i`` of one component's first ``n``
    directions (all when ``None``), as rows.
    """
    check_component(analysis.meta, kind, layer, head, analysis.meta.gated)
    d = kind_result(analysis, kind).decomposition
    c = d.index(layer, head)
    dirs = d.directions[c].float()  # [d_model, r]
    if n is not None:
        dirs = dirs[:, :n]
    img = dirs.T @ analysis.W_U.float().to(dirs.device)
    return img / img.norm(dim=1, keepdim=True).clamp_min(1e-30)


def spectrum(analysis: Analysis, kind: str, layer: int, head: int | None) -> Float[Tensor, " r"]:
    """Singular values of one component."""
    d = kind_result(analysis, kind).decomposition
    return d.S[d.index(layer, head)].float()


@dataclass(frozen=True)
class Match:
    """One component's directions in model A paired with those in model B.

    Attributes:
        kind, layer, head: the component.
        names: ``(A, B)`` model names.
        cos: signed cosine of every pair of token images ``[n_a, n_b]``.
        pairs: ``(i in A, j in B)`` per assigned pair, ordered by ``i``.
        matched: absolute cosine of each assigned pair.
        sign: ``+1``/``-1``: the sign that turns B's direction into A's.
        S_a, S_b: singular values of the component in each model.
        principal: cosines of the principal angles between the spans of the top ``k``
            token images of each model, largest first (all 1: the same subspace).
        threshold: pairs with ``matched`` below it are unmatched.
    """

    kind: str
    layer: int
    head: int | None
    names: tuple[str, str]
    cos: Float[Tensor, "n_a n_b"]
    pairs: Int[Tensor, "pair 2"]
    matched: Float[Tensor, " pair"]
    sign: Int[Tensor, " pair"]
    S_a: Float[Tensor, " r_a"]
    S_b: Float[Tensor, " r_b"]
    principal: Float[Tensor, " k"]
    threshold: float = UNMATCHED_BELOW

    def __post_init__(self) -> None:
        n_a, n_b = self.cos.shape
        p = min(n_a, n_b)
        if self.pairs.shape != (p, 2) or self.matched.shape != (p,) or self.sign.shape != (p,):
            raise ValueError(f"pairs/matched/sign must hold {p} pairs for cos {(n_a, n_b)}")

    def unmatched(self) -> list[int]:
        """Directions of A (indices) whose best assigned partner in B is below the threshold."""
        return [
            int(self.pairs[i, 0])
            for i in range(len(self.matched))
            if self.matched[i] < self.threshold
        ]

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        return {
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "models": list(self.names),
            "pairs": [
                {
                    "a": int(i),
                    "b": int(j),
                    "cos": round(float(c), 6),
                    "sign": int(s),
                    "sigma_a": float(self.S_a[i]),
                    "sigma_b": float(self.S_b[j]),
                }
                for (i, j), c, s in zip(self.pairs.tolist(), self.matched, self.sign, strict=True)
            ],
            "unmatched": self.unmatched(),
            "threshold": self.threshold,
            "principal_cosines": [round(float(x), 6) for x in self.principal],
        }


def assign(cos: Float[Tensor, "n_a n_b"]) -> Int[Tensor, "pair 2"]:
    """Optimal one-to-one pairing maximising the summed ``|cos|``, ordered by A's index."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(cos.abs().double().cpu().numpy(), maximize=True)
    return torch.stack([torch.as_tensor(rows), torch.as_tensor(cols)], dim=1).long()


def principal_cosines(
    a: Float[Tensor, "k d_vocab"], b: Float[Tensor, "k2 d_vocab"]
) -> Float[Tensor, " m"]:
    """Cosines of the principal angles between the row spans of ``a`` and ``b``
    (``m = min(k, k2)``), largest first.
    """
    qa, _ = torch.linalg.qr(a.double().T)
    qb, _ = torch.linalg.qr(b.double().T)
    return torch.linalg.svdvals(qa.T @ qb).clamp(0.0, 1.0).float()


def match_images(
    img_a: Float[Tensor, "n_a d_vocab"], img_b: Float[Tensor, "n_b d_vocab"], k: int
) -> tuple[
    Float[Tensor, "n_a n_b"],
    Int[Tensor, "p 2"],
    Float[Tensor, " p"],
    Int[Tensor, " p"],
    Float[Tensor, " k"],
]:
    """Cosines, optimal pairs, their ``|cos|`` and signs, and the principal cosines of
    the top-``k`` spans, for two sets of unit-norm token images.
    """
    cos = (img_a.double() @ img_b.double().T).float()
    pairs = assign(cos)
    signed = cos[pairs[:, 0], pairs[:, 1]]
    sign = torch.where(signed < 0, -1, 1).long()
    k = max(1, min(k, len(img_a), len(img_b)))
    return cos, pairs, signed.abs(), sign, principal_cosines(img_a[:k], img_b[:k])


def match_component(
    a: Analysis,
    b: Analysis,
    kind: str,
    layer: int,
    head: int | None = None,
    n: int | None = None,
    k: int = 8,
    threshold: float = UNMATCHED_BELOW,
) -> Match:
    """Match the first ``n`` directions (all when ``None``) of one component of ``a``
    with those of ``b``; principal angles over the top ``k``.

    Raises:
        SpecError: the models do not share a tokenizer, or the component is not in both.
    """
    check_same_tokenizer(a, b)
    check_component(b.meta, kind, layer, head, b.meta.gated)
    img_a = token_images(a, kind, layer, head, n)
    img_b = token_images(b, kind, layer, head, n)
    cos, pairs, matched, sign, principal = match_images(img_a, img_b, k)
    return Match(
        kind,
        layer,
        head,
        (a.meta.name, b.meta.name),
        cos,
        pairs,
        matched,
        sign,
        spectrum(a, kind, layer, head),
        spectrum(b, kind, layer, head),
        principal,
        threshold,
    )
