"""Weight edits: remove (or scale) singular directions of OV circuits and MLP matrices.

An :class:`Edit` names one direction the way ``python -m core directions`` lists it
(kind, layer, head, index, under the analysis's processing) and a ``scale`` (0 removes
it, 1 keeps it, 2 doubles it). Every edit is a rank-one update of one stored matrix,
computed only from the token-side (``d_model``) singular vector:

* OV, token side ``v`` (written): ``W_O' = W_O (I - (1-c) v v^T)``; then
  ``W_V W_O' = W_V W_O - (1-c) s u v^T`` because ``W_V W_O v = s u``. Only that query
  head's ``W_O`` changes, so under grouped-query attention the shared ``W_V`` and the
  other heads of its group are untouched. The head no longer writes ``v`` at all (its
  value bias included).
* mlp_in / mlp_gate, token side ``u`` (read): ``W' = W - (1-c) u u^T W``.
* mlp_out, token side ``v`` (written): ``W' = W (I - (1-c) v v^T)``.

Under ``post`` processing the reading matrices were folded (``W_f = diag(w) W``, then
centred for LayerNorm; :mod:`core.model.fold`); the folded edit ``dW_f = -(1-c) u u^T W_f``
is realised on the stored matrix as ``dW = diag(1/w) dW_f``, which changes the model's
map of the normalised input by exactly ``dW_f`` (``u`` is orthogonal to the all-ones
vector, so the centring LayerNorm applies cannot see the difference) and whose own fold
is exactly ``W_f + dW_f``.
Several edits of one matrix add up to the product of their projections, since they use
orthonormal vectors of the same decomposition.

Edits are applied (``core.edit.hf.apply_edits``) to a *new* Hugging Face module that
shares every untouched tensor with the loaded model and owns fresh copies of the edited
ones: the shared model that other sessions read is never written.
``core.edit.compare.compare`` shows a matrix's directions before and after edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.analysis import Analysis
from core.errors import SpecError
from core.model.fold import unfold_rows
from core.query import check_component, kind_result
from core.svd.decompose import dense_svd, factored_svd

#: Kinds an edit can change.
EDIT_KINDS: tuple[str, ...] = ("ov", "mlp_in", "mlp_gate", "mlp_out")
#: The ``ModelWeights`` field of each MLP kind's matrix.
FIELDS = {"mlp_in": "W_in", "mlp_gate": "W_gate", "mlp_out": "W_out"}
MAX_SCALE = 2.0


@dataclass(frozen=True)
class Edit:
    """Scale direction ``index`` of one component by ``scale`` (0 removes it).

    ``head`` is the query head for ``ov`` and ``None`` for MLP kinds.
    """

    kind: str
    layer: int
    head: int | None
    index: int
    scale: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EDIT_KINDS:
            raise SpecError(f"Cannot edit {self.kind!r}; edit one of {', '.join(EDIT_KINDS)}.")
        if (self.head is None) != (self.kind != "ov"):
            raise SpecError(
                "An ov edit needs a head (ov:LAYER:HEAD:INDEX)."
                if self.kind == "ov"
                else f"{self.kind} has no heads; write {self.kind}:LAYER:INDEX."
            )
        if self.index < 0 or self.layer < 0 or (self.head is not None and self.head < 0):
            raise SpecError("Layers, heads and direction indices count from 0.")
        if not 0.0 <= self.scale <= MAX_SCALE:
            raise SpecError(f"Scale must be between 0 and {MAX_SCALE:g}, not {self.scale:g}.")

    @property
    def component(self) -> tuple[str, int, int | None]:
        """``(kind, layer, head)``: the matrix this edit changes."""
        return (self.kind, self.layer, self.head)

    @property
    def key(self) -> tuple[str, int, int | None, int]:
        """``(kind, layer, head, index)``: the direction this edit changes."""
        return (self.kind, self.layer, self.head, self.index)

    def spec(self) -> str:
        """The CLI form, e.g. ``ov:3:1:0`` or ``mlp_in:2:5`` (``*0.5`` when scaled)."""
        parts = [self.kind, str(self.layer)] + ([] if self.head is None else [str(self.head)])
        out = ":".join([*parts, str(self.index)])
        return out if self.scale == 0.0 else f"{out}*{self.scale:g}"


@dataclass(frozen=True)
class EditSet:
    """An ordered set of edits, at most one per direction (a later one replaces it)."""

    edits: tuple[Edit, ...] = ()

    def __iter__(self) -> Iterator[Edit]:
        return iter(self.edits)

    def __len__(self) -> int:
        return len(self.edits)

    def add(self, *edits: Edit) -> EditSet:
        """A new set with ``edits`` appended (replacing edits of the same directions)."""
        # Each key's last edit, in the order of those last edits, after the kept old
        # ones: what appending one at a time would give, in linear time (a truncation
        # adds hundreds of edits at once).
        last = {e.key: i for i, e in enumerate(edits)}
        kept = [o for o in self.edits if o.key not in last]
        return EditSet((*kept, *(e for i, e in enumerate(edits) if last[e.key] == i)))

    def undo(self) -> EditSet:
        """A new set without the last edit."""
        return EditSet(self.edits[:-1])

    def spec(self) -> str:
        """The CLI form: comma-separated edit specs."""
        return ",".join(e.spec() for e in self.edits)

    @classmethod
    def from_components(cls, items: Iterable[Sequence[Any]], scale: float = 0.0) -> EditSet:
        """Edits from ``(kind, layer, head, index)`` tuples, e.g. search results."""
        return cls().add(*(Edit(str(k), int(l_), _opt(h), int(i), scale) for k, l_, h, i in items))

    @classmethod
    def parse(cls, text: str, scale: float = 0.0) -> EditSet:
        """Parse ``ov:L:H:i,mlp_in:L:i,...``; an item may end in ``*SCALE``."""
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise SpecError("Give at least one direction, e.g. --remove ov:0:1:3 or mlp_in:2:0.")
        return cls().add(*(_parse_one(t, scale) for t in items))


def _opt(h: Any) -> int | None:
    return None if h is None else int(h)


_ITEM = re.compile(r"^([a-z_]+)((?::-?\d+)+)(?:\*([0-9.eE+-]+))?$")


def _parse_one(text: str, scale: float) -> Edit:
    m = _ITEM.match(text)
    if not m:
        raise SpecError(
            f"Cannot read {text!r}; write ov:LAYER:HEAD:INDEX or mlp_in|mlp_gate|mlp_out:LAYER:INDEX."
        )
    kind, nums = m.group(1), [int(x) for x in m.group(2)[1:].split(":")]
    if kind not in EDIT_KINDS:
        raise SpecError(f"Cannot edit {kind!r} in {text!r}; edit one of {', '.join(EDIT_KINDS)}.")
    want = 3 if kind == "ov" else 2
    if len(nums) != want:
        form = "ov:LAYER:HEAD:INDEX" if kind == "ov" else f"{kind}:LAYER:INDEX"
        raise SpecError(f"Cannot read {text!r}; write {form}.")
    try:
        s = scale if m.group(3) is None else float(m.group(3))
    except ValueError:
        raise SpecError(f"Cannot read the scale in {text!r}; write e.g. ov:0:1:3*0.5.") from None
    head = nums[1] if kind == "ov" else None
    return Edit(kind, nums[0], head, nums[-1], s)


def validate(analysis: Analysis, edits: Iterable[Edit]) -> None:
    """Raise :class:`SpecError` (one sentence) for an edit the model does not have."""
    for e in edits:
        check_component(analysis.meta, e.kind, e.layer, e.head, analysis.weights.W_gate is not None)
        rank = kind_result(analysis, e.kind).decomposition.rank
        if e.index >= rank:
            raise SpecError(
                f"{e.spec()} has no direction {e.index}; this matrix has directions 0 to {rank - 1}."
            )


# --------------------------------------------------------------------------- rank-one updates


@dataclass(frozen=True)
class RankOne:
    """``W += outer(left, right)`` on one stored matrix (``x @ W`` orientation, float64).

    ``target`` is ``(matrix, layer)`` with matrix ``attn_out`` (all heads' ``W_O`` stacked,
    ``[n_heads * d_head, d_model]``), ``mlp_in``, ``mlp_gate`` or ``mlp_out``.
    """

    target: tuple[str, int]
    left: Float[Tensor, " d_in"]
    right: Float[Tensor, " d_out"]


def f64(t: Tensor) -> Tensor:
    """``t`` as a CPU float64 tensor: edits are computed so whatever the model's device."""
    return t.detach().to("cpu", torch.float64)


def token_vectors(
    analysis: Analysis, kind: str, layer: int, head: int | None, indices: Sequence[int]
) -> Float[Tensor, "d_model n"]:
    """Exact (float64) token-side singular vectors of the listed directions.

    The component is decomposed again in float64 (once per analysis:
    :func:`exact_vectors`) and each cached direction is matched to its recomputed vector
    by absolute cosine, so ``index`` means what the cache lists; in
    a near-degenerate pair (no clear match) the cached vector itself is used. Signs follow
    the cache.
    """
    d = kind_result(analysis, kind).decomposition
    cached = f64(d.directions[d.index(layer, head)][:, list(indices)])
    cached = cached / cached.norm(dim=0, keepdim=True)
    make = partial(exact_vectors, analysis, kind, layer, head)
    fresh = analysis._exact_memo.get((kind, layer, head), make)
    cos = cached.T @ fresh  # [n, r]
    best = cos.abs().argmax(dim=1)
    picked = fresh[:, best] * torch.sign(cos.gather(1, best[:, None]))[:, 0]
    good = cos.abs().gather(1, best[:, None])[:, 0] > 0.999
    return torch.where(good[None, :], picked, cached)


def exact_vectors(
    analysis: Analysis, kind: str, layer: int, head: int | None
) -> Float[Tensor, "d_model r"]:
    """All token-side singular vectors of one component, decomposed in float64 (what
    :func:`token_vectors` matches the cached directions to; the analysis keeps them).
    """
    w = analysis.weights
    if kind == "ov":
        assert head is not None
        _, _, fresh = factored_svd(f64(w.W_V[layer, head]), f64(w.W_O[layer, head]))
        return fresh
    U, _, V = dense_svd(f64(w.matrix(kind, layer)))
    return U if kind in ("mlp_in", "mlp_gate") else V


def rank_one_updates(analysis: Analysis, edits: Iterable[Edit]) -> list[RankOne]:
    """The stored-weight updates that realise ``edits`` (one per edit)."""
    edits = list(edits)
    validate(analysis, edits)
    by_comp: dict[tuple[str, int, int | None], list[Edit]] = {}
    for e in edits:
        by_comp.setdefault(e.component, []).append(e)
    out: list[RankOne] = []
    # Each matrix in float64 once per call, not once per edit: a truncation removes
    # hundreds of directions of one matrix.
    memo: dict[tuple[str, str, int], Tensor] = {}
    for (kind, layer, head), group in by_comp.items():
        vecs = token_vectors(analysis, kind, layer, head, [e.index for e in group])
        for e, t in zip(group, vecs.T):
            out.append(_update(analysis, e, t, memo))
    return out


def _update(
    analysis: Analysis, e: Edit, t: Tensor, memo: dict[tuple[str, str, int], Tensor]
) -> RankOne:
    coef = 1.0 - e.scale
    raw, w = analysis.raw, analysis.weights

    def matrix(view: str) -> Tensor:
        key = (view, e.kind, e.layer)
        if key not in memo:
            src = raw.W_out[e.layer] if view == "raw" else w.matrix(e.kind, e.layer)
            memo[key] = f64(src)
        return memo[key]

    if e.kind == "ov":
        assert e.head is not None
        m = analysis.meta
        left = torch.zeros(m.n_heads * m.d_head, dtype=torch.float64)
        block = slice(e.head * m.d_head, (e.head + 1) * m.d_head)
        left[block] = -coef * (f64(raw.W_O[e.layer, e.head]) @ t)
        return RankOne(("attn_out", e.layer), left, t)
    if e.kind == "mlp_out":
        return RankOne(("mlp_out", e.layer), -coef * (matrix("raw") @ t), t)
    # ``w.matrix`` is the folded matrix under ``post``; its update is realised on the
    # stored (unfolded) one, whose fold is then exactly the folded update.
    left = -coef * t
    if w.processing == "post":
        left = unfold_rows(raw, FIELDS[e.kind], e.layer, left)
    return RankOne((e.kind, e.layer), left, matrix("processed").T @ t)
