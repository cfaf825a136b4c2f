"""Ablation sweeps: each of a matrix's first directions removed (or scaled) alone, and
what that does to the target's log-probability.

Directions are batched: batch row ``b`` runs the prompt with its own rank-one update
added by a forward hook on the edited matrix's module, which equals editing a copy of
the weights per direction at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.hf import apply_edits, plain_model, target_module
from core.edit.prompts import logprobs, prompt_ids, score, target_ids, target_scores
from core.edit.rank_one import Edit, EditSet, RankOne, rank_one_updates, validate
from core.query import kind_result


@dataclass(frozen=True)
class SweepRow:
    """Direction ``index`` removed (or scaled) alone: the target's log-prob and its change."""

    index: int
    singular_value: float
    logprob: float
    delta_logprob: float


class _RowUpdates:
    """A forward hook adding each batch row's own rank-one updates to its output.

    ``left`` ``[b, k, d_in]``, ``right`` ``[b, k, d_out]`` (rows with fewer than ``k``
    updates padded with zeros): row ``b`` gets ``sum_i (x_b @ left_bi) right_bi`` added,
    i.e. ``x_b @ (W + sum_i outer(left_bi, right_bi))``.
    """

    def __init__(self, left: Tensor, right: Tensor) -> None:
        self.left, self.right = left, right

    def __call__(self, module: Any, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
        x = inputs[0]
        coeff = torch.einsum("btd,bkd->btk", x.double(), self.left.to(x.device))
        add = torch.einsum("btk,bkd->btd", coeff, self.right.to(x.device))
        return output + add.to(output.dtype)


def run_with_row_updates(
    model: Any, ids: Int[Tensor, "b t"], updates: Sequence[Sequence[RankOne]]
) -> Float[Tensor, "b t vocab"]:
    """Log-probs of ``ids`` where batch row ``b`` runs with ``updates[b]`` added to their
    matrices (none: the model as it is). Equivalent to editing the weights row by row;
    the rows' matrices may differ (each matrix's hook adds nothing to the other rows).
    """
    if len(updates) != ids.shape[0]:
        raise ValueError("one list of updates per batch row")
    handles = []
    try:
        for tgt in dict.fromkeys(u.target for row in updates for u in row):
            module, _ = target_module(model, tgt)
            mine = [[u for u in row if u.target == tgt] for row in updates]
            ref = next(row[0] for row in mine if row)
            k = max(len(row) for row in mine)
            left = torch.zeros(len(mine), k, ref.left.shape[0], dtype=ref.left.dtype)
            right = torch.zeros(len(mine), k, ref.right.shape[0], dtype=ref.right.dtype)
            for b, row in enumerate(mine):
                for i, u in enumerate(row):
                    left[b, i], right[b, i] = u.left, u.right
            handles.append(module.register_forward_hook(_RowUpdates(left, right)))
        return logprobs(model, ids)
    finally:
        for handle in handles:
            handle.remove()


def sweep(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    prompt: str,
    target: str,
    n: int = 20,
    scale: float = 0.0,
    edits: EditSet | None = None,
    batch: int = 16,
) -> list[SweepRow]:
    """For each of the first ``n`` directions of one matrix, remove it alone (or scale
    it by ``scale``) on top of ``edits``, and record the target's log-prob and its change.
    """
    assert analysis.model is not None
    tok = analysis.model.tokenizer
    p, t = prompt_ids(tok, prompt), target_ids(tok, target, prompt)
    validate(analysis, [Edit(kind, layer, head, 0, scale)])
    d = kind_result(analysis, kind).decomposition
    c = d.index(layer, head)
    n = min(n, d.rank)
    base = apply_edits(analysis, edits).model if edits else plain_model(analysis)
    before = score(base, p, t)  # also refuses a prompt past the context
    updates = rank_one_updates(analysis, [Edit(kind, layer, head, i, scale) for i in range(n)])
    rows: list[SweepRow] = []
    for start in range(0, n, batch):
        chunk = updates[start : start + batch]
        ids = torch.tensor([p + t[:-1]] * len(chunk))
        lp = run_with_row_updates(base, ids, [[u] for u in chunk])
        for j, s in enumerate(target_scores(lp, len(p), t).tolist()):
            i = start + j
            rows.append(SweepRow(i, float(d.S[c, i]), s, s - before))
    return rows
