"""Rank-k truncation and loss recovered, per matrix.

A matrix (one head's OV circuit, or all heads' of a layer; an MLP's in, gate or out) is
replaced by its top-``k`` singular truncation, by ``k`` of its singular directions drawn
at random, or by zero (``k = 0``), and the next-token loss on reference windows is
measured. Loss recovered is

    1 - (L_k - L_orig) / (L_zero - L_orig),

the metric of the post's discussion (sparse MLPs, SAEs). Truncation is the removal of
every other direction through the rank-one edits of :mod:`core.edit` (for orthonormal
directions their sum is exactly ``W - W_k``), applied to a copy: the shared model is
never written. ``k`` is resolved on the given grid only: ``k_at(0.9)`` is the smallest
grid ``k`` that reaches 90%.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.hf import apply_edits, plain_model
from core.edit.prefix import Prefix, logprobs_from, prefixes
from core.edit.prompts import logprobs
from core.edit.rank_one import Edit, validate
from core.errors import SpecError
from core.progress import Progress, quiet
from core.query import kind_result
from core.settings import HEAD_KINDS

#: The k grid: powers of two (the full rank is always added).
DEFAULT_KS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Below this change of loss from zeroing a matrix (nats), loss recovered is a ratio of
#: noise: the matrix hardly matters on this text, and ``k_at`` answers ``None``.
MIN_GAP = 0.01


@dataclass(frozen=True)
class TruncationCurve:
    """Loss against kept rank for one matrix.

    ``head`` is ``None`` for MLP kinds, and for ``ov`` when every head of the layer is
    truncated together (each head to its own top ``k``). ``loss_random[d, j]`` is draw
    ``d`` of keeping ``ks[j]`` random singular directions.
    """

    kind: str
    layer: int
    head: int | None
    rank: int
    loss_orig: float
    loss_zero: float
    ks: Int[Tensor, " n"]
    loss_svd: Float[Tensor, " n"]
    loss_random: Float[Tensor, "draws n"]

    def recovered(self, loss: Tensor) -> Tensor:
        """Loss recovered for losses of any shape (nan when zeroing changes nothing)."""
        gap = self.loss_zero - self.loss_orig
        if abs(gap) < 1e-12:
            return torch.full_like(loss, float("nan"))
        return 1.0 - (loss - self.loss_orig) / gap

    @property
    def recovered_svd(self) -> Float[Tensor, " n"]:
        """Loss recovered by the top-``k`` truncations."""
        return self.recovered(self.loss_svd)

    @property
    def recovered_random(self) -> Float[Tensor, "draws n"]:
        """Loss recovered by each random draw."""
        return self.recovered(self.loss_random)

    @property
    def meaningful(self) -> bool:
        """Whether zeroing the matrix raises the loss by at least :data:`MIN_GAP`."""
        return self.loss_zero - self.loss_orig >= MIN_GAP

    def k_at(self, fraction: float) -> int | None:
        """The smallest grid ``k`` whose truncation recovers ``fraction`` (None: none, or
        the curve is not :attr:`meaningful`).
        """
        if not self.meaningful:
            return None
        ok = (self.recovered_svd >= fraction).nonzero()[:, 0]
        return int(self.ks[ok[0]]) if len(ok) else None


@torch.no_grad()
def mean_loss(model: Any, ids: Int[Tensor, "n t"], batch: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on windows ``ids``."""
    return _mean_loss(lambda rows: logprobs(model, ids[rows]), ids, batch)


@torch.no_grad()
def mean_loss_from(model: Any, start: Prefix, batch: int = 8) -> float:
    """:func:`mean_loss` on ``start``'s windows, ``model`` run from ``start``'s layer
    (:func:`core.edit.prefix.logprobs_from`; ``model`` is the caller's own copy).
    """
    return _mean_loss(lambda rows: logprobs_from(model, start, rows), start.ids, batch)


def _mean_loss(
    logprobs_of: Callable[[slice], Tensor], ids: Int[Tensor, "n t"], batch: int
) -> float:
    total, count = 0.0, 0
    for s in range(0, ids.shape[0], batch):
        x = ids[s : s + batch]
        lp = logprobs_of(slice(s, s + batch))[:, :-1]
        total -= float(lp.gather(2, x[:, 1:, None]).sum())
        count += x.shape[0] * (x.shape[1] - 1)
    return total / max(count, 1)


def _heads(analysis: Analysis, kind: str, head: int | None) -> list[int | None]:
    if kind not in HEAD_KINDS:
        if head is not None:
            raise SpecError(f"{kind} has no heads; leave the head out.")
        return [None]
    n = analysis.meta.n_heads
    return list(range(n)) if head is None else [head]


def _removal(
    kind: str, layer: int, heads: Sequence[int | None], keep: Sequence[int], rank: int
) -> list[Edit]:
    """Edits removing every direction of ``heads`` not in ``keep``."""
    kept = set(keep)
    return [Edit(kind, layer, h, i, 0.0) for h in heads for i in range(rank) if i not in kept]


def rank_grid(ks: Sequence[int], rank: int) -> list[int]:
    """The kept ranks a curve measures: ``ks`` clipped to ``[0, rank]``, with 0 (the
    matrix zeroed) and ``rank`` (the matrix unchanged), sorted, each once.
    """
    return sorted({min(max(int(k), 0), rank) for k in ks} | {0, rank})


@dataclass(frozen=True)
class TruncationCost:
    """What a :func:`truncation_sweep` will run, told before it runs.

    Attributes:
        passes: edited forward passes over the reference windows (the unchanged matrix
            reuses the unedited loss, and every draw's k = 0 the top-k's zeroed one; the
            sweep adds one unedited pass for all layers).
        whole_passes: the same work in passes of the whole model: a variant of layer ``L``
            runs blocks ``L`` onward, ``(n_layers - L) / n_layers`` of a pass.
    """

    passes: int
    whole_passes: float


def truncation_cost(
    ks: Sequence[int], rank: int, draws: int, layers: Sequence[int], n_layers: int
) -> TruncationCost:
    """The :class:`TruncationCost` of a sweep over ``layers`` of a kind of rank ``rank``."""
    # Top-k: every grid k but the full rank; each draw: every k but 0 and the full rank.
    n = len(rank_grid(ks, rank))
    per_layer = (n - 1) + max(n - 2, 0) * draws
    blocks = sum(n_layers - layer for layer in layers)
    return TruncationCost(per_layer * len(layers), per_layer * blocks / n_layers)


def truncation_curve(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    ids: Int[Tensor, "n t"],
    ks: Sequence[int] = DEFAULT_KS,
    draws: int = 2,
    seed: int = 0,
    loss_orig: float | None = None,
    start: Prefix | None = None,
) -> TruncationCurve:
    """Loss of the model with one matrix truncated to each ``k`` of ``ks`` (clipped to
    the matrix's rank, which is always included), top-``k`` and ``draws`` random draws.

    Each variant runs from ``layer`` on (``start``: the unedited stream entering it,
    computed here when not given), since the layers before it are the unedited model's.

    Raises:
        SpecError: an unknown kind, layer or head, or a kind that cannot be edited.
    """
    heads = _heads(analysis, kind, head)
    validate(analysis, [Edit(kind, layer, heads[0], 0, 0.0)])
    rank = kind_result(analysis, kind).decomposition.rank
    grid = rank_grid(ks, rank)
    if loss_orig is None:
        loss_orig = mean_loss(plain_model(analysis), ids)
    if start is None:
        start = prefixes(plain_model(analysis), ids, [layer])[layer]
    assert start.layer == layer and start.ids is ids

    def loss_keeping(keep: Sequence[int]) -> float:
        if len(keep) == rank:
            return loss_orig
        edited = apply_edits(analysis, _removal(kind, layer, heads, keep, rank)).model
        return mean_loss_from(edited, start)

    loss_svd = [loss_keeping(range(k)) for k in grid]

    def loss_drawn(keep: Sequence[int]) -> float:
        # Keeping none of the drawn directions is zeroing, as k = 0 of the top-k was.
        return loss_svd[0] if not keep else loss_keeping(keep)

    g = torch.Generator().manual_seed(seed)
    loss_random = [
        [loss_drawn(torch.randperm(rank, generator=g)[:k].tolist()) for k in grid]
        for _ in range(draws)
    ]
    return TruncationCurve(
        kind=kind,
        layer=layer,
        head=head if kind in HEAD_KINDS else None,
        rank=rank,
        loss_orig=loss_orig,
        loss_zero=loss_svd[0],
        ks=torch.tensor(grid),
        loss_svd=torch.tensor(loss_svd, dtype=torch.float64),
        loss_random=torch.tensor(loss_random, dtype=torch.float64).reshape(draws, len(grid)),
    )


def truncation_sweep(
    analysis: Analysis,
    kind: str,
    layers: Sequence[int],
    ids: Int[Tensor, "n t"],
    ks: Sequence[int] = DEFAULT_KS,
    draws: int = 2,
    seed: int = 0,
    progress: Progress = quiet,
) -> list[TruncationCurve]:
    """:func:`truncation_curve` for every layer of one kind (OV: all heads of a layer
    together), the unedited loss measured once.
    """
    progress(0.0, f"the unedited model's pass over {ids.shape[0]} reference windows")
    plain = plain_model(analysis)
    base = mean_loss(plain, ids)
    starts = prefixes(plain, ids, layers)
    out = []
    for j, layer in enumerate(layers):
        progress(j / max(len(layers), 1), f"truncating {kind} of layer {layer}")
        start = starts[layer]
        out.append(truncation_curve(analysis, kind, layer, None, ids, ks, draws, seed, base, start))
    progress(1.0, f"truncated {kind} of {len(layers)} layers")
    return out
