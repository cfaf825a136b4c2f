"""Which singular directions a prompt uses: each direction's activation at a position.

The activation is :mod:`core.activations.readers`'s (its docstring and the README
define it exactly): a reading side's is the dot product of the unit read vector ``u_i``
with the input the matrix receives at that token (the norm's output under ``raw``, the
bare normalisation ``n(x)`` under ``post``); a writing side's is the component along
the unit write vector ``v_i`` of what that head (``z_h @ W_O[h]``) or MLP (its output,
bias included) writes there; signs follow the cache's sign rule, so a positive
activation pushes toward the direction's top tokens and a negative one toward its
bottom tokens.

Here the reading side of a layer is its heads' OV read vectors and its MLP's in (and
gate) vectors; the writing side is its heads' OV write vectors and its MLP's out
vectors. Directions are ranked by ``|activation|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jaxtyping import Float
from torch import Tensor

from core.activations.readers import side_readers
from core.analysis import Analysis
from core.errors import SpecError
from core.lens.capture import Capture
from core.query import Direction, directions, kind_result

#: Per side of a layer, the ``(kind, side)`` pairs of :mod:`core.activations.readers`
#: it scores.
SIDE_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "read": (("ov", "read"), ("mlp_in", "read"), ("mlp_gate", "read")),
    "write": (("ov", "write"), ("mlp_out", "write")),
}
SIDES = tuple(SIDE_PARTS)
READ_KINDS = tuple(k for k, _ in SIDE_PARTS["read"])
WRITE_KINDS = tuple(k for k, _ in SIDE_PARTS["write"])


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


@dataclass(frozen=True)
class PromptActivations:
    """Every scored direction's activation at every position of one prompt.

    Attributes:
        n_positions: the prompt's length.
        values: per ``(kind, side)``, ``[pos, components * rank]``; column
            ``c * rank + i`` is direction ``i`` of the kind's component row ``c``.
        components: per kind, its decomposition's ``(layer, head)`` rows.
        rank: per kind, directions per component.
    """

    n_positions: int
    values: dict[tuple[str, str], Float[Tensor, "pos n"]]
    components: dict[str, tuple[tuple[int, int | None], ...]]
    rank: dict[str, int]

    def __post_init__(self) -> None:
        for (kind, side), v in self.values.items():
            want = (self.n_positions, len(self.components[kind]) * self.rank[kind])
            if tuple(v.shape) != want:
                raise ValueError(f"{kind}.{side} values are {tuple(v.shape)}, not {want}")


def prompt_activations(analysis: Analysis, cap: Capture) -> PromptActivations:
    """The activations of every direction the lens scores (:data:`SIDE_PARTS`) at every
    position of ``cap``, from :func:`core.activations.readers.side_readers`.

    Raises:
        SpecError: ``cap`` was captured for another processing than the analysis's.
    """
    if cap.processing != analysis.settings.processing:
        raise SpecError(
            f"The prompt was captured for {cap.processing} but the analysis is "
            f"{analysis.settings.processing}; run the prompt again."
        )
    wanted = {p for parts in SIDE_PARTS.values() for p in parts}
    batch = cap.captured()
    values: dict[tuple[str, str], Tensor] = {}
    components: dict[str, tuple[tuple[int, int | None], ...]] = {}
    rank: dict[str, int] = {}
    for reader in side_readers(analysis):
        if (reader.kind, reader.side) in wanted:
            values[(reader.kind, reader.side)] = reader(batch)
            components[reader.kind] = reader.components
            rank[reader.kind] = reader.rank
    return PromptActivations(int(cap.ids.shape[0]), values, components, rank)


def direction_values(
    acts: PromptActivations, layer: int, side: str
) -> dict[tuple[str, int | None], Float[Tensor, "pos rank"]]:
    """Every direction's activation at every position, for the components of ``layer``
    on ``side``: ``{(kind, head): [pos, rank]}``.

    Raises:
        SpecError: bad layer or side.
    """
    if side not in SIDES:
        raise SpecError(f"Unknown side {side!r}; use read or write.")
    layers = {c[0] for comps in acts.components.values() for c in comps}
    if layer not in layers:
        raise SpecError(f"Layer {layer} is out of range; this model has layers 0 to {max(layers)}.")
    out: dict[tuple[str, int | None], Tensor] = {}
    for kind, part in SIDE_PARTS[side]:
        if (kind, part) not in acts.values:
            continue
        v, r = acts.values[(kind, part)], acts.rank[kind]
        for c, (lyr, head) in enumerate(acts.components[kind]):
            if lyr == layer:
                out[(kind, head)] = v[:, c * r : (c + 1) * r]
    return out


#: How :func:`active_directions` ranks: by ``|activation|``, or on the reading side by
#: ``|σ · activation|`` (how much the direction passes on to the matrix's output; a tiny
#: σ can meet a huge input, e.g. a model's massive-activation dimension). On the
#: writing side both are ``|activation|``, which is already what is written.
RANKINGS = ("activation", "scaled")


def active_directions(
    analysis: Analysis,
    acts: PromptActivations,
    layer: int,
    position: int,
    side: str,
    n: int = 10,
    by: str = "activation",
) -> list[ActiveDirection]:
    """The ``n`` directions of ``layer``'s heads and MLP with the largest ``|activation|``
    (or, ``by="scaled"``, ``|σ · activation|`` on the reading side; :data:`RANKINGS`) at
    ``position`` on ``side`` (``read`` or ``write``), largest first.

    Raises:
        SpecError: bad layer, position, side or ranking.
    """
    if by not in RANKINGS:
        raise SpecError(f"Unknown ranking {by!r}; use {' or '.join(RANKINGS)}.")
    if not 0 <= position < acts.n_positions:
        raise SpecError(
            f"Position {position} is out of range; the prompt has positions 0 to "
            f"{acts.n_positions - 1}."
        )
    scaled = by == "scaled" and side == "read"
    flat: list[tuple[float, float, str, int | None, int]] = []
    for (kind, head), v in direction_values(acts, layer, side).items():
        d = kind_result(analysis, kind).decomposition
        S = d.S[d.index(layer, head)].float()
        row = v[position]
        score = (row * S).abs() if scaled else row.abs()
        for i in score.topk(min(n, row.shape[0])).indices.tolist():
            flat.append((float(score[i]), float(row[i]), kind, head, i))
    flat.sort(key=lambda r: -r[0])
    items = []
    for _, value, kind, head, i in flat[:n]:
        d = kind_result(analysis, kind).decomposition
        S_i = float(d.S[d.index(layer, head), i])
        items.append(ActiveDirection(kind, layer, head, i, side, value, S_i))
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
