"""Streaming statistics of many directions' activations over a corpus: top and bottom
``N`` tokens, exact mean and standard deviation, a fixed-bin histogram and the share of
strongly active tokens, updated one batch at a time.

Histogram and "strongly active" are measured against a reference taken from the first
batch (its per-direction mean ``mu0`` and standard deviation ``sd0``), because fixed bins
must exist before the pass: the bins span ``mu0 +- HIST_SPAN * sd0`` (values outside go
to the end bins), and a token is *strongly active* for a direction when
``|a - mu0| > STRONG_SD * sd0``.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Half-width of the histogram's range, in reference standard deviations.
HIST_SPAN = 6.0
#: A token is strongly active when its activation is this many reference standard
#: deviations from the reference mean.
STRONG_SD = 3.0


class Running:
    """Top/bottom ``k`` and the histogram of ``n`` directions' activations so far.

    Token indices are global (the caller maps them to documents and positions).
    """

    def __init__(self, n: int, k: int, bins: int, device: str = "cpu") -> None:
        self.n, self.k, self.bins = n, k, bins
        self.top_val = torch.empty(0, n, device=device)
        self.top_idx = torch.empty(0, n, dtype=torch.long, device=device)
        self.bot_val = torch.empty(0, n, device=device)
        self.bot_idx = torch.empty(0, n, dtype=torch.long, device=device)
        self.total = torch.zeros(n, dtype=torch.float64, device=device)
        self.total_sq = torch.zeros(n, dtype=torch.float64, device=device)
        self.count = 0
        self.hist = torch.zeros(n, bins, dtype=torch.long, device=device)
        self.strong = torch.zeros(n, dtype=torch.long, device=device)
        self.lo: Tensor | None = None
        self.width: Tensor | None = None
        self.mu0: Tensor | None = None
        self.sd0: Tensor | None = None

    def update(self, vals: Tensor, start: int) -> None:
        """Add the activations ``vals`` ``[T, n]`` of tokens ``start .. start + T - 1``."""
        T = vals.shape[0]
        if T == 0:
            return
        k = min(self.k, T)
        # Each end of the batch first, then merged with the ends so far: two small
        # top-k's instead of one over every token.
        top, at = vals.topk(k, dim=0)
        self.top_val, self.top_idx = _merge(self.top_val, self.top_idx, top, at + start, self.k)
        low, at = (-vals).topk(k, dim=0)
        neg, self.bot_idx = _merge(-self.bot_val, self.bot_idx, low, at + start, self.k)
        self.bot_val = -neg
        # Per-batch float32 sums (a batch is at most a few thousand tokens), kept in float64.
        self.total += vals.sum(0).double()
        self.total_sq += vals.pow(2).sum(0).double()
        self.count += T
        if self.mu0 is None:
            self.mu0 = vals.mean(0)
            sd = vals.std(0, unbiased=False) if T > 1 else torch.zeros_like(self.mu0)
            # A direction constant over the first batch still gets bins of some width.
            self.sd0 = torch.where(sd > 0, sd, self.mu0.abs().clamp_min(1e-6))
            self.lo = self.mu0 - HIST_SPAN * self.sd0
            self.width = 2 * HIST_SPAN * self.sd0 / self.bins
        assert self.lo is not None and self.width is not None and self.sd0 is not None
        z = vals - self.lo
        z.div_(self.width).floor_().clamp_(0, self.bins - 1)
        b = z.long()
        b += torch.arange(self.n, device=vals.device) * self.bins
        self.hist += torch.bincount(b.reshape(-1), minlength=self.n * self.bins).reshape(
            self.n, self.bins
        )
        z = vals - self.mu0
        self.strong += (z.abs_() > STRONG_SD * self.sd0).sum(0)

    def mean_std(self) -> tuple[Tensor, Tensor]:
        """Exact mean and (population) standard deviation over every token, ``[n]`` each."""
        c = max(1, self.count)
        mean = self.total / c
        var = (self.total_sq / c - mean.pow(2)).clamp_min(0)
        return mean.float(), var.sqrt().float()


def _merge(
    best: Tensor, best_idx: Tensor, vals: Tensor, idx: Tensor, k: int
) -> tuple[Tensor, Tensor]:
    """The ``k`` largest of ``best`` and ``vals`` per column, with their indices."""
    cand = torch.cat([best, vals])
    cand_idx = torch.cat([best_idx, idx])
    top, where = cand.topk(min(k, cand.shape[0]), dim=0)
    return top, cand_idx.gather(0, where)
