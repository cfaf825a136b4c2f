"""The activation of a direction, defined exactly: what a captured batch is multiplied by.

For a direction ``i`` of component ``c`` of a matrix ``W = U diag(S) V^T`` (``x @ W``
convention, :mod:`core.svd.decompose`), with the signs the cache's sign rule gives
(:func:`core.svd.project.token_signs`: the pair ``(u_i, v_i)`` is flipped together so that
the token side's strongest token projection is positive), the activation at a token is:

* **reading sides** (OV read ``u``, QK query ``u`` and key ``v``, MLP in and gate ``u``):
  ``a = u . x`` where ``x`` is the input the matrix actually receives at that token.
  Under ``raw`` that is the output of the norm before it (``ln1`` for attention, ``ln2``
  for the MLP), scale and bias included. Under ``post`` the fold has moved the norm's
  scale (and LayerNorm's centring) into the matrix (:mod:`core.model.fold`), so ``x`` is
  the normalised but unscaled stream ``n(x)`` (:func:`core.activations.capture.bare_norm`),
  and the norm's bias, a constant input, is left out.
* **writing sides** (OV write ``v``, MLP out ``v``): ``a = v . y`` where ``y`` is what that
  head or MLP writes to the residual stream at that token: for head ``h``,
  ``z_h W_O[h]`` (its mixed values times its rows of the output projection; the output
  bias belongs to no head and is left out); for an MLP, the output of its last
  projection, bias included.

Since ``x @ W = sum_i S_i (u_i . x) v_i``, a positive read activation pushes the output
along ``+v_i``; with the sign rule, "top" examples are the tokens that push toward the
direction's top tokens (for QK, the query side ``u`` and key side ``v`` raise the
attention score together when both are positive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from core.activations.capture import Captured
from core.analysis import Analysis
from core.query import kind_result
from core.settings import ACTIVATION_SIDES
from core.svd.project import token_signs

#: Sides of each kind with activations: the first is the one ``U`` holds, the second ``V``.
SIDES = ACTIVATION_SIDES
#: The singular vectors each side uses (``U`` or ``V`` of the decomposition).
SIDE_VECTORS: dict[tuple[str, str], str] = {
    ("ov", "read"): "U",
    ("ov", "write"): "V",
    ("qk", "query"): "U",
    ("qk", "key"): "V",
    ("mlp_in", "read"): "U",
    ("mlp_gate", "read"): "U",
    ("mlp_out", "write"): "V",
}
#: The captured role (:mod:`core.activations.capture`) each side multiplies.
SIDE_ROLE: dict[tuple[str, str], str] = {
    ("ov", "read"): "attn_in",
    ("ov", "write"): "z",
    ("qk", "query"): "attn_in",
    ("qk", "key"): "attn_in",
    ("mlp_in", "read"): "mlp_in",
    ("mlp_gate", "read"): "mlp_in",
    ("mlp_out", "write"): "mlp_out",
}


def side_name(kind: str, side: str) -> str:
    """A side's key in results, ``<kind>.<side>``."""
    return f"{kind}.{side}"


def resolve_side(kind: str, side: str | None) -> str:
    """``side`` checked for ``kind``; ``read``/``write`` name QK's query/key sides too,
    and ``None`` is the kind's first side.

    Raises:
        ValueError: the kind has no such side.
    """
    sides = SIDES.get(kind)
    if sides is None:
        raise ValueError(f"{kind} has no activations; use one of {', '.join(SIDES)}.")
    if side is None:
        return sides[0]
    if kind == "qk" and side in ("read", "write"):
        return "query" if side == "read" else "key"
    if side not in sides:
        raise ValueError(f"{kind} has the side(s) {', '.join(sides)}, not {side!r}.")
    return side


def oriented_signs(analysis: Analysis, kind: str) -> Tensor:
    """``[C, r]`` signs (+1/-1) that give the cached decomposition's vectors the sign rule.

    Directions the cache has projected already follow it; those past ``n_projected`` (a
    background fill not there yet, or ``n_project`` smaller than the rank) are oriented
    here as :func:`core.query.directions` orients them.
    """
    res = kind_result(analysis, kind)
    d = res.decomposition
    C, r = d.S.shape
    signs = torch.ones(C, r)
    m = min(res.n_projected, r)
    if m < r:
        dirs = d.directions[:, :, m:].permute(0, 2, 1).reshape(-1, d.directions.shape[1])
        flip, _ = token_signs(dirs.float(), analysis.W_U.float(), 1, analysis.settings.vocab_chunk)
        signs[:, m:] = torch.where(flip.reshape(C, r - m), -1.0, 1.0)
    return signs


@dataclass(frozen=True)
class SideReader:
    """Computes one side's activations for every direction of a kind from a batch.

    Attributes:
        kind: matrix kind.
        side: side name (:data:`SIDES`).
        components: ``(layer, head)`` per component, the decomposition's order.
        rank: directions per component; column ``c * rank + i`` is direction ``i`` of
            component ``c``.
        role: the captured tensor it reads.
        mats: per layer, ``(columns, M)``: the output columns this layer fills and the
            ``[d_in, len(columns)]`` matrix the captured ``[T, d_in]`` is multiplied by.
    """

    kind: str
    side: str
    components: tuple[tuple[int, int | None], ...]
    rank: int
    role: str
    mats: dict[int, tuple[Tensor, Tensor]]

    @property
    def n(self) -> int:
        """Directions (columns) in all."""
        return len(self.components) * self.rank

    def __call__(self, cap: Captured) -> Tensor:
        """Activations ``[T, n]`` of the batch ``cap``."""
        out: Tensor | None = None
        for layer, (cols, M) in self.mats.items():
            x = cap.get(self.role, layer)
            if out is None:
                out = torch.empty(x.shape[0], self.n, dtype=x.dtype, device=x.device)
            if cols.numel() and int(cols[-1]) - int(cols[0]) + 1 == cols.numel():
                # A layer's components are contiguous rows: write in place, no scatter.
                torch.matmul(x, M, out=out[:, int(cols[0]) : int(cols[-1]) + 1])
            else:
                out[:, cols] = x @ M
        assert out is not None
        return out


def side_readers(analysis: Analysis, device: str = "cpu") -> list[SideReader]:
    """One :class:`SideReader` per side of every kind the analysis has (embedding aside)."""
    readers = []
    W_O = analysis.weights.W_O.float()  # [L, H, dh, d]; never folded
    for kind in analysis.kinds():
        if kind not in SIDES or kind not in analysis.svd.kinds:
            continue
        d = kind_result(analysis, kind).decomposition
        signs = oriented_signs(analysis, kind)
        for side in SIDES[kind]:
            vecs = d.U if SIDE_VECTORS[kind, side] == "U" else d.V
            assert vecs is not None, (kind, side)
            vecs = vecs.float() * signs[:, None, :]  # [C, d_model, r]
            readers.append(_reader(kind, side, d.components, vecs, W_O, device))
    return readers


def _reader(
    kind: str,
    side: str,
    components: tuple[tuple[int, int | None], ...],
    vecs: Tensor,
    W_O: Tensor,
    device: str,
) -> SideReader:
    C, _, r = vecs.shape
    by_layer: dict[int, list[int]] = {}
    for c, (layer, _) in enumerate(components):
        by_layer.setdefault(layer, []).append(c)
    make: Callable[[list[int], int], Tensor]
    if (kind, side) == ("ov", "write"):
        # Head h writes z_h W_O[h]; its component along v is z_h (W_O[h] v): one block
        # per head on the diagonal of a [H*dh, H*r] matrix applied to z's [T, H*dh].
        def make(rows: list[int], layer: int) -> Tensor:
            H, dh = W_O.shape[1], W_O.shape[2]
            M = torch.zeros(H * dh, len(rows) * r)
            for j, c in enumerate(rows):
                h = components[c][1]
                assert h is not None
                M[h * dh : (h + 1) * dh, j * r : (j + 1) * r] = W_O[layer, h] @ vecs[c]
            return M

    else:

        def make(rows: list[int], layer: int) -> Tensor:
            return vecs[rows].permute(1, 0, 2).reshape(vecs.shape[1], len(rows) * r)

    mats = {}
    for layer, rows in sorted(by_layer.items()):
        cols = (torch.tensor(rows)[:, None] * r + torch.arange(r)[None, :]).reshape(-1)
        mats[layer] = (cols.to(device), make(rows, layer).contiguous().to(device))
    return SideReader(kind, side, components, r, SIDE_ROLE[kind, side], mats)
