"""Singular value decompositions of every weight matrix, batched by kind.

A matrix ``W`` (``x @ W`` convention, ``d_in x d_out``) is decomposed as
``W = U diag(S) V^T``. ``U``'s columns are the directions the matrix reads, ``V``'s the
directions it writes. Only sides that live in the residual stream (``d_model``) are
kept: those are the sides that project into token space through ``W_U``.

OV (``W_V W_O``) and QK (``W_Q W_K^T``) circuits are never formed densely: each head's
product is decomposed from its ``d_model x d_head`` factors (QR of both factors, then
the SVD of the small ``d_head x d_head`` core), batched over all heads of all layers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from core.model.weights import ModelWeights
from core.svd.gram import Eigh, gram_eighs

#: Which side of each kind is projected to tokens: "in" = U (read), "out" = V (write).
TOKEN_SIDE: dict[str, str] = {
    "ov": "out",
    "qk": "out",
    "mlp_in": "in",
    "mlp_gate": "in",
    "mlp_out": "out",
    "embed": "out",
}

Component = tuple[int, int | None]


@dataclass(frozen=True)
class Decomposition:
    """SVDs of every component of one matrix kind.

    Attributes:
        kind: matrix kind (ov, qk, mlp_in, mlp_gate, mlp_out, embed).
        components: ``(layer, head)`` per row; ``head`` is ``None`` for MLP and embedding.
        S: singular values, descending, only the non-zero part (rank ``r``).
        U: read directions when the input side is the residual stream, else ``None``.
        V: write directions when the output side is the residual stream, else ``None``.
        degenerate: singular values within ``degeneracy_tol`` (relative) of a neighbour;
            their vectors are only defined up to a rotation in that subspace.
        control: whether this is the random Gaussian control.
    """

    kind: str
    components: tuple[Component, ...]
    S: Float[Tensor, "comp rank"]
    U: Float[Tensor, "comp d_model rank"] | None
    V: Float[Tensor, "comp d_model rank"] | None
    degenerate: Bool[Tensor, "comp rank"]
    control: bool = False

    def __post_init__(self) -> None:
        c, r = self.S.shape
        if len(self.components) != c:
            raise ValueError(
                f"{len(self.components)} components for S of shape {tuple(self.S.shape)}"
            )
        for name in ("U", "V"):
            t = getattr(self, name)
            if t is not None and (t.shape[0] != c or t.shape[2] != r):
                raise ValueError(f"{name} has shape {tuple(t.shape)}, S has {(c, r)}")
        if self.degenerate.shape != self.S.shape:
            raise ValueError("degenerate must have the shape of S")
        side = self.U if TOKEN_SIDE[self.kind] == "in" else self.V
        if side is None:
            raise ValueError(f"{self.kind} needs its token side ({TOKEN_SIDE[self.kind]})")

    @property
    def rank(self) -> int:
        """Number of singular values kept per component."""
        return int(self.S.shape[1])

    @property
    def directions(self) -> Float[Tensor, "comp d_model rank"]:
        """The token-side singular vectors, as columns."""
        side = self.U if TOKEN_SIDE[self.kind] == "in" else self.V
        assert side is not None
        return side

    def index(self, layer: int, head: int | None = None) -> int:
        """Row of the component ``(layer, head)``; ``KeyError`` when absent."""
        try:
            return self.components.index((layer, head))
        except ValueError:
            raise KeyError((self.kind, layer, head)) from None

    def with_signs(self, signs: Float[Tensor, "comp rank"]) -> Decomposition:
        """A copy with each singular pair multiplied by ``signs`` (+1/-1): same matrix."""
        return dataclasses.replace(
            self,
            U=None if self.U is None else self.U * signs[:, None, :],
            V=None if self.V is None else self.V * signs[:, None, :],
        )


def factored_svd(
    A: Float[Tensor, "*batch m r"], B: Float[Tensor, "*batch r n"]
) -> tuple[Float[Tensor, "*batch m r"], Float[Tensor, "*batch r"], Float[Tensor, "*batch n r"]]:
    """SVD of the product ``A @ B`` without forming it: returns ``U, S, V`` with
    ``A @ B == U @ diag(S) @ V^T``, ``U: [*, m, r]``, ``V: [*, n, r]``.

    Cost is ``O(m r^2)`` per matrix instead of ``O(m^3)`` for the dense product.
    """
    Qa, Ra = torch.linalg.qr(A)  # [*, m, r], [*, r, r]
    Qb, Rb = torch.linalg.qr(B.transpose(-1, -2))  # [*, n, r], [*, r, r]
    core = Ra @ Rb.transpose(-1, -2)
    Uc, S, Vch = torch.linalg.svd(core)
    return Qa @ Uc, S, Qb @ Vch.transpose(-1, -2)


def gram_factored_svd(
    A: Float[Tensor, "b m r"], B: Float[Tensor, "b r n"]
) -> tuple[Float[Tensor, "b m r"], Float[Tensor, "b r"], Float[Tensor, "b n r"]]:
    """:func:`factored_svd` through Cholesky factors of the two ``r x r`` Grams, for GPUs.

    ``A = Q_a L_a^T`` with ``L_a = chol(A^T A)`` (and likewise ``B^T``), so
    ``A B = Q_a (L_a^T L_b) Q_b^T`` and only the ``r x r`` core needs an SVD. Every step
    but that one is a batched product, Cholesky or triangular solve, which the GPU runs for
    all heads at once, where its QR and SVD solvers loop over the batch one small matrix at
    a time. The Grams are formed and factored in float64, so squaring the condition number
    costs nothing at float32 weights; the cores (``b x r x r``, a few MB) are decomposed on
    the CPU. A head whose Gram is singular (a zero or rank-deficient factor) falls back to
    :func:`factored_svd`. Results come back in ``A``'s dtype, on its device.
    """
    dev, dt = A.device, A.dtype
    Ad, Bt = A.to(torch.float64), B.transpose(-1, -2).to(torch.float64)
    La, info_a = torch.linalg.cholesky_ex(Ad.transpose(-1, -2) @ Ad)
    Lb, info_b = torch.linalg.cholesky_ex(Bt.transpose(-1, -2) @ Bt)
    core = (La.transpose(-1, -2) @ Lb).cpu()
    Uc, S, Vch = torch.linalg.svd(core)
    Uc, S, Vc = Uc.to(dev), S.to(dev), Vch.transpose(-1, -2).to(dev)
    # Q_a = A L_a^{-T}: solve X L_a^T = A for X, batched.
    Qa = torch.linalg.solve_triangular(La.transpose(-1, -2), Ad, upper=True, left=False)
    Qb = torch.linalg.solve_triangular(Lb.transpose(-1, -2), Bt, upper=True, left=False)
    U, V = Qa @ Uc, Qb @ Vc
    bad = ((info_a != 0) | (info_b != 0)).nonzero().flatten()
    if len(bad):
        U[bad], S[bad], V[bad] = factored_svd(Ad[bad], B[bad].to(torch.float64))
    return U.to(dt), S.to(dt), V.to(dt)


def dense_svd(
    W: Float[Tensor, "*batch m n"],
) -> tuple[Float[Tensor, "*batch m r"], Float[Tensor, "*batch r"], Float[Tensor, "*batch n r"]]:
    """Thin SVD ``W = U diag(S) V^T`` with ``r = min(m, n)``."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U, S, Vh.transpose(-1, -2)


def token_side_svd(
    W: Float[Tensor, "*batch m n"], side: str, eighs: Sequence[Eigh] | None = None
) -> tuple[Float[Tensor, "*batch d r"], Float[Tensor, "*batch r"]]:
    """Singular values and the singular vectors of one side of ``W`` only.

    ``side="in"`` gives ``U`` (``d = m``), ``"out"`` gives ``V`` (``d = n``); ``r = min(m, n)``.
    When the wanted side is the short one (an MLP's ``d_model`` side), this is the
    eigendecomposition of the ``d x d`` Gram matrix formed and solved in float64: the
    long side is never computed, which is several times cheaper than a thin SVD, and
    squaring the condition number costs nothing at float64 for float32 weights
    (singular values agree with ``torch.linalg.svd`` to ~1e-7 relative). Otherwise it
    falls back to :func:`dense_svd`. Batches are solved one matrix at a time so the
    float64 copies stay small. ``eighs``, when given, are those Gram solves already made
    (ascending, one per matrix of the flattened batch, on any device:
    :class:`core.svd.gram.HostGrams`).
    """
    m, n = W.shape[-2], W.shape[-1]
    d = m if side == "in" else n
    if not uses_gram(W, side):
        U, S, V = dense_svd(W)
        return (U if side == "in" else V), S
    flat = W.reshape(-1, m, n)
    vecs = torch.empty(flat.shape[0], d, d, dtype=W.dtype, device=W.device)
    vals = torch.empty(flat.shape[0], d, dtype=W.dtype, device=W.device)
    solved = gram_eighs(flat, side) if eighs is None else eighs
    for b, (ev, Q) in enumerate(solved):  # ascending
        vals[b] = ev.flip(0).clamp_min(0).sqrt().to(W.dtype).to(W.device)
        vecs[b] = Q.flip(1).to(W.dtype).to(W.device)
    return vecs.reshape(*W.shape[:-2], d, d), vals.reshape(*W.shape[:-2], d)


def uses_gram(W: Float[Tensor, "*batch m n"], side: str) -> bool:
    """Whether :func:`token_side_svd` takes ``W``'s ``side`` from its Gram (the side is
    the short one).
    """
    m, n = W.shape[-2], W.shape[-1]
    return (m if side == "in" else n) <= min(m, n)


def token_side_matrices(
    weights: ModelWeights, kind: str
) -> tuple[Float[Tensor, "*batch m n"], str] | None:
    """The matrices whose token side :func:`decompose_kind` takes for an MLP kind or the
    embedding (``[layers, m, n]``; the embedding's ``[1, d_vocab, d_model]``) and that
    side; ``None`` for the head kinds and for a kind the model lacks.
    """
    if kind == "embed":
        return weights.W_E[None], TOKEN_SIDE[kind]
    W = {"mlp_in": weights.W_in, "mlp_gate": weights.W_gate, "mlp_out": weights.W_out}.get(kind)
    return None if W is None else (W, TOKEN_SIDE[kind])


def degenerate_mask(S: Float[Tensor, "*batch r"], tol: float) -> Bool[Tensor, "*batch r"]:
    """Flag values whose relative gap ``(s_i - s_{i+1}) / s_i`` to a neighbour is below ``tol``."""
    gap = (S[..., :-1] - S[..., 1:]) / S[..., :-1].clamp_min(torch.finfo(S.dtype).tiny)
    close = gap < tol
    mask = torch.zeros_like(S, dtype=torch.bool)
    mask[..., :-1] |= close
    mask[..., 1:] |= close
    return mask


def decompose_kind(
    weights: ModelWeights, kind: str, degeneracy_tol: float, eighs: Sequence[Eigh] | None = None
) -> Decomposition:
    """Decompose every component of ``kind`` (all heads of all layers at once).

    ``eighs``: for an MLP kind or the embedding, its Gram solves already made
    (:class:`core.svd.gram.HostGrams`); else they are made here, on the weights' device.
    """
    m = weights.meta
    layers = range(m.n_layers)
    U: Tensor | None
    V: Tensor | None
    if kind in ("ov", "qk"):
        if kind == "ov":
            A, B = weights.W_V, weights.W_O
        else:
            A, B = weights.W_Q, weights.W_K.transpose(-1, -2)
        # On a GPU the batched-Cholesky route; on the CPU, QR (LAPACK runs each small
        # matrix at full speed there, and needs no float64 copies).
        svd = gram_factored_svd if A.device.type == "cuda" else factored_svd
        U, S, V = svd(A.flatten(0, 1), B.flatten(0, 1))
        comps: tuple[Component, ...] = tuple((lay, h) for lay in layers for h in range(m.n_heads))
    elif kind in ("mlp_in", "mlp_gate", "mlp_out", "embed"):
        found = token_side_matrices(weights, kind)
        if found is None:
            raise KeyError(kind)
        # Only the d_model side is kept, so the d_mlp (or vocabulary) side is never computed.
        W, side = found
        vecs, S = token_side_svd(W, side, eighs)
        U, V = (vecs, None) if side == "in" else (None, vecs)
        comps = ((0, None),) if kind == "embed" else tuple((lay, None) for lay in layers)
    else:
        raise KeyError(kind)
    return Decomposition(
        kind=kind,
        components=comps,
        S=S.contiguous(),
        U=None if U is None else U.contiguous(),
        V=None if V is None else V.contiguous(),
        degenerate=degenerate_mask(S, degeneracy_tol),
    )
