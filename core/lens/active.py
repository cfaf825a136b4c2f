"""Which singular directions a prompt uses: each direction's activation at a position.

Definition (the one the README states):

* **Reading side** (OV's read vectors ``U``, MLP in and gate): the activation of
  direction ``i`` of a matrix at a token is ``x · u_i``, the dot product of the unit
  read-side singular vector with the input the matrix receives at that token. Under
  ``raw`` that input is the output of the norm before it (``ln1`` for a head, ``ln2``
  for the MLP), scale and bias included. Under ``post`` the scale (and LayerNorm's
  centring) is folded into the matrix, so the input is the bare normalisation
  ``n(x)`` (the norm's output minus its bias, divided by its scale); ``u_i`` is then
  the folded matrix's read vector.
* **Writing side** (OV's write vectors ``V``, MLP out): the activation is ``w · v_i``,
  the component along the unit write-side singular vector of what that head or MLP
  writes at that token through the matrix: a head's ``z_h @ W_O[h]`` (its
  attention-weighted values through its own rows of the output projection), the MLP's
  ``h @ W_out`` (its hidden activations through the out matrix). Output biases are
  not part of any matrix and are left out. Writing matrices are the same under both
  processings.
* **Sign**: each direction has the sign the cache gives it (the sign rule of
  :func:`core.svd.project.token_signs`: its largest-magnitude token projection is
  positive), so a positive activation pushes toward the direction's top tokens and a
  negative one toward its bottom tokens. Directions past the cache's projected ones get
  the rule applied here, as :func:`core.query.directions` does for their tokens.

Directions are ranked by ``|activation|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.analysis import Analysis
from core.errors import SpecError
from core.lens.capture import Capture
from core.query import Direction, directions, kind_result
from core.svd.project import token_signs

#: Kinds whose reading side is scored, and the norm (0 before attention, 1 before the
#: MLP) whose output they read.
READ_KINDS: dict[str, int] = {"ov": 0, "mlp_in": 1, "mlp_gate": 1}
#: Kinds whose writing side is scored.
WRITE_KINDS: tuple[str, ...] = ("ov", "mlp_out")
SIDES = ("read", "write")


@dataclass(frozen=True)
class ActiveDirection:
    """One direction's activation at one position.

    Attributes:
        kind, layer, head, index: the direction (``head`` ``None`` for the MLP).
        side: ``read`` or ``write``.
        value: its activation (signed; see the module docstring).
        singular_value: its singular value.
    """

    kind: str
    layer: int
    head: int | None
    index: int
    side: str
    value: float
    singular_value: float

    @property
    def end(self) -> str:
        """The end of the direction it pushes toward: ``top`` or ``bottom``."""
        return "top" if self.value >= 0 else "bottom"


def _signs(analysis: Analysis, kind: str, c: int) -> Float[Tensor, " rank"]:
    """+1/-1 per direction of component row ``c``: the cache's orientation, with the sign
    rule applied to directions the cache has not projected.
    """
    res = kind_result(analysis, kind)
    d = res.decomposition
    signs = torch.ones(d.rank)
    m = min(res.n_projected, d.rank)
    if m < d.rank:
        flip, _ = token_signs(
            d.directions[c, :, m:].T, analysis.W_U, 1, analysis.settings.vocab_chunk
        )
        signs[m:] = torch.where(flip, -1.0, 1.0)
    return signs


def _read_input(analysis: Analysis, cap: Capture, layer: int, which: int) -> Tensor:
    x = cap.norm_bare if analysis.settings.processing == "post" else cap.norm_out
    return x[layer, which]


def direction_values(
    analysis: Analysis, cap: Capture, layer: int, side: str
) -> dict[tuple[str, int | None], Float[Tensor, "pos rank"]]:
    """Every direction's activation at every position, for the components of ``layer``
    on ``side``: ``{(kind, head): [pos, rank]}``.

    Raises:
        SpecError: bad layer or side.
    """
    if side not in SIDES:
        raise SpecError(f"Unknown side {side!r}; use read or write.")
    if not 0 <= layer < cap.n_layers:
        raise SpecError(
            f"Layer {layer} is out of range; this model has layers 0 to {cap.n_layers - 1}."
        )
    out: dict[tuple[str, int | None], Tensor] = {}
    meta = analysis.meta
    kinds = [k for k in (READ_KINDS if side == "read" else WRITE_KINDS) if k in analysis.svd.kinds]
    writes: dict[tuple[str, int | None], Tensor] = {}
    if side == "write":
        raw = analysis.raw
        for h in range(meta.n_heads):
            writes[("ov", h)] = cap.attn_z[layer, :, h] @ raw.W_O[layer, h].float()
        writes[("mlp_out", None)] = cap.mlp_hidden[layer] @ raw.W_out[layer].float()
    for kind in kinds:
        d = kind_result(analysis, kind).decomposition
        heads: Sequence[int | None] = range(meta.n_heads) if kind == "ov" else (None,)
        for h in heads:
            c = d.index(layer, h)
            if side == "read":
                assert d.U is not None
                vals = _read_input(analysis, cap, layer, READ_KINDS[kind]) @ d.U[c].float()
            else:
                assert d.V is not None
                vals = writes[(kind, h)] @ d.V[c].float()
            out[(kind, h)] = vals * _signs(analysis, kind, c)
    return out


def active_directions(
    analysis: Analysis, cap: Capture, layer: int, position: int, side: str, n: int = 10
) -> list[ActiveDirection]:
    """The ``n`` directions of ``layer``'s heads and MLP with the largest ``|activation|``
    at ``position`` on ``side`` (``read`` or ``write``), largest first.

    Raises:
        SpecError: bad layer, position or side.
    """
    t = int(cap.ids.shape[0])
    if not 0 <= position < t:
        raise SpecError(
            f"Position {position} is out of range; the prompt has positions 0 to {t - 1}."
        )
    values = direction_values(analysis, cap, layer, side)
    flat: list[tuple[float, str, int | None, int]] = []
    for (kind, head), v in values.items():
        row = v[position]
        for i in row.abs().topk(min(n, row.shape[0])).indices.tolist():
            flat.append((float(row[i]), kind, head, i))
    flat.sort(key=lambda r: -abs(r[0]))
    items = []
    for value, kind, head, i in flat[:n]:
        S = kind_result(analysis, kind).decomposition.S
        c = kind_result(analysis, kind).decomposition.index(layer, head)
        items.append(ActiveDirection(kind, layer, head, i, side, value, float(S[c, i])))
    return items


def with_tokens(
    analysis: Analysis, items: Sequence[ActiveDirection], k: int = 10, filters: Sequence[str] = ()
) -> list[tuple[ActiveDirection, Direction]]:
    """Each active direction with its token ends (:func:`core.query.directions`, one call
    per component).
    """
    need: dict[tuple[str, int, int | None], int] = {}
    for a in items:
        key = (a.kind, a.layer, a.head)
        need[key] = max(need.get(key, 0), a.index + 1)
    got = {key: directions(analysis, *key, n=n, k=k, filters=filters) for key, n in need.items()}
    return [(a, got[(a.kind, a.layer, a.head)][a.index]) for a in items]


def to_json(a: ActiveDirection, d: Direction | None = None, k: int = 10) -> dict[str, Any]:
    """The CLI's form of one active direction (with the ``k`` tokens of the end it pushes
    toward when ``d`` is given).
    """
    out: dict[str, Any] = {
        "matrix": a.kind,
        "layer": a.layer,
        "head": a.head,
        "index": a.index,
        "side": a.side,
        "activation": round(a.value, 6),
        "singular_value": round(a.singular_value, 6),
        "end": a.end,
    }
    if d is not None:
        end = d.top if a.end == "top" else d.bottom
        out["tokens"] = [t for t, _, _ in end[:k]]
    return out
