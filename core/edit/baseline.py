"""Baselines for edits: the same measurement for random directions matched in index and
singular value, and how the whole vocabulary moved.

Removing almost any direction moves a target's log-probability a little, so an edit's
effect means something only beside what comparable random edits do. A *matched draw*
replaces each edit ``(kind, layer, head, index)`` by the direction of the same ``index``
in another component of the same kind (another head for OV, another layer for MLP
matrices), chosen at random (seeded) among the ``POOL`` components whose singular value
at that index is nearest in ratio to the edited one's; components the edit set touches
are never drawn, and one draw never picks one direction twice. ``N_DRAWS`` draws give a
mean and spread.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.analysis import Analysis
from core.edit.prompts import target_scores
from core.edit.rank_one import Edit, EditSet, RankOne, rank_one_updates
from core.edit.rows import run_with_row_updates
from core.query import kind_result

#: Matched random draws per baseline.
N_DRAWS = 3
#: Candidates per edit: the components nearest in singular value at the same index.
POOL = 5


@dataclass(frozen=True)
class RandomBaseline:
    """Matched random draws of an edit and the target's log-prob change under each.

    ``draws`` are the drawn edit sets (each matched to the real one, edit for edit),
    ``deltas`` the change of the target's log-prob each caused (nats).
    """

    draws: tuple[EditSet, ...]
    deltas: tuple[float, ...]

    @property
    def mean(self) -> float:
        """Mean change over the draws (NaN with none)."""
        return statistics.fmean(self.deltas) if self.deltas else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation of the changes (NaN with fewer than two)."""
        return statistics.stdev(self.deltas) if len(self.deltas) > 1 else math.nan

    def exceeded_by(self, delta: float) -> bool | None:
        """Whether ``delta`` moves the target more (in absolute value) than every draw;
        ``None`` with no draws.
        """
        if not self.deltas:
            return None
        return abs(delta) > max(abs(d) for d in self.deltas)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {
            "matched": "same kind and direction index, another component, nearest σ",
            "draws": [
                {"edits": s.spec(), "delta_logprob": d} for s, d in zip(self.draws, self.deltas)
            ],
            "mean": None if math.isnan(self.mean) else self.mean,
            "std": None if math.isnan(self.std) else self.std,
        }


def _sigma(analysis: Analysis, kind: str) -> tuple[list[tuple[int, int | None]], Tensor]:
    d = kind_result(analysis, kind).decomposition
    return list(d.components), d.S


def matched_draw(analysis: Analysis, edits: Sequence[Edit], seed: int) -> EditSet:
    """One random edit set matched to ``edits`` in kind, index and σ (module docstring).

    An edit with no other component to draw from (one head, one layer) is dropped.
    """
    g = torch.Generator().manual_seed(seed)
    touched = {e.component for e in edits}
    taken: set[tuple[str, int, int | None, int]] = set()
    out: list[Edit] = []
    for e in edits:
        comps, S = _sigma(analysis, e.kind)
        row = comps.index((e.layer, e.head))
        target = float(S[row, e.index])
        cands = []
        for c, (layer, head) in enumerate(comps):
            key = (e.kind, layer, head, e.index)
            if (e.kind, layer, head) in touched or key in taken or e.index >= S.shape[1]:
                continue
            s = float(S[c, e.index])
            gap = abs(math.log(max(s, 1e-30)) - math.log(max(target, 1e-30)))
            cands.append((gap, layer, head))
        if not cands:
            continue
        cands.sort(key=lambda t: t[0])
        pool = cands[:POOL]
        _, layer, head = pool[int(torch.randint(len(pool), (1,), generator=g))]
        taken.add((e.kind, layer, head, e.index))
        out.append(Edit(e.kind, layer, head, e.index, e.scale))
    return EditSet(tuple(out))


def matched_draws(analysis: Analysis, edits: Sequence[Edit], n: int = N_DRAWS) -> list[EditSet]:
    """``n`` matched draws, seeds ``0 .. n-1``."""
    return [matched_draw(analysis, list(edits), seed) for seed in range(n)]


def set_deltas(
    analysis: Analysis,
    base: Any,
    prompt: Sequence[int],
    target: Sequence[int],
    edit_sets: Sequence[Sequence[Edit]],
    before: float,
    batch: int = 16,
) -> list[float]:
    """The target log-prob change of each edit set applied (alone) to ``base``
    (:func:`update_deltas` of :func:`edit_set_updates`).
    """
    updates = edit_set_updates(analysis, edit_sets)
    return update_deltas(base, prompt, target, updates, before, batch)


def edit_set_updates(
    analysis: Analysis, edit_sets: Sequence[Sequence[Edit]]
) -> list[list[RankOne]]:
    """The rank-one updates of each edit set, in its edits' order."""
    # One rank_one_updates call per component (each decomposes its matrix afresh in
    # float64: 0.15 s for a SmolLM2-135M MLP); matched draws share components (a sweep's
    # 48 draws of one MLP's first 16 directions sit in 16). Within one component the
    # updates come back in the order asked.
    by_component: dict[tuple[str, int, int | None], list[tuple[int, int]]] = {}
    for a, edits in enumerate(edit_sets):
        for j, e in enumerate(edits):
            by_component.setdefault(e.component, []).append((a, j))
    updates: list[list[Any]] = [[None] * len(edits) for edits in edit_sets]
    for where in by_component.values():
        got = rank_one_updates(analysis, [edit_sets[a][j] for a, j in where])
        for (a, j), u in zip(where, got, strict=True):
            updates[a][j] = u
    return updates


def update_deltas(
    base: Any,
    prompt: Sequence[int],
    target: Sequence[int],
    updates: Sequence[Sequence[RankOne]],
    before: float,
    batch: int = 16,
) -> list[float]:
    """The target log-prob change (from ``before``) of ``base`` with each row of
    ``updates`` added: ``batch`` rows, editing any matrices, share a forward pass
    (:func:`core.edit.rows.run_with_row_updates`) instead of an edited copy each.
    """
    out = [math.nan] * len(updates)
    for start in range(0, len(updates), batch):
        part = list(range(start, min(start + batch, len(updates))))
        ids = torch.tensor([[*prompt, *target[:-1]]] * len(part))
        lp = run_with_row_updates(base, ids, [updates[a] for a in part])
        for a, s in zip(part, target_scores(lp, len(prompt), target).tolist()):
            out[a] = s - before
    return out


def vocabulary_shift(
    before: Float[Tensor, " vocab"], after: Float[Tensor, " vocab"], token: int
) -> tuple[int, float]:
    """``(rank, median)``: the rank of ``token`` among all tokens by decrease of log-prob
    (1: decreased most; ties count in its favour) and the median ``|Δ|`` of the others.
    """
    delta = after.double() - before.double()
    rank = 1 + int((delta < delta[token]).sum())
    others = torch.cat([delta[:token], delta[token + 1 :]]).abs()
    return rank, float(others.quantile(0.5))  # the midpoint for an even count, as numpy
