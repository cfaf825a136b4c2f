"""Which projection reads directions best: the real-against-control gap per projection.

For each projection (:data:`core.settings.PROJECTIONS`) the same weights are decomposed
and read through ``read_unembed(W_U, projection)``; the offline labeller scores the top
``k`` tokens of the first ``n`` directions of each block and of its random control, and
:func:`core.label.calibrate.calibrated_fractions` gives the share of real directions
above the cut calibrated on the control (5% of the control above it) and the gap to
the held-out control, with its 95% interval. A projection that reads directions fairly
should widen the gap: it is how much more often real directions look like one concept
than random ones through the same unembedding.

Beside it, per projection, the share of the real directions' top tokens that are among
the :data:`TOP_NORM_PERCENT` per cent of the vocabulary with the largest unembedding
norms (what :func:`core.svd.tokens.norm_mask` drops): a fair reading keeps it near that
per cent.

The rule that picks the default (:func:`best_projection`): the largest mean gap over
the blocks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.analysis import Analysis, analysis_from_weights
from core.label.calibrate import DEFAULT_RATE, calibrated_fractions
from core.label.offline import OfflineLabeller
from core.label.sweep import SWEEP_KINDS, offline_labeller, sweep_offline
from core.model.weights import ModelWeights
from core.progress import Progress, quiet
from core.query import kind_result
from core.settings import PROJECTIONS, Settings
from core.svd.tokens import norm_mask

#: Per cent of the vocabulary, by largest unembedding norm, counted as high-norm.
TOP_NORM_PERCENT = 2.0
#: The row that averages the blocks' rows.
MEAN_ROW = "mean"


@dataclass(frozen=True)
class ProjectionGap:
    """One projection's result on one block (or the blocks' mean, matrix ``"mean"``).

    Attributes:
        projection: ``raw``, ``centred`` or ``standardized``.
        matrix: block (``ov``, ``mlp_in``, ``mlp_out``) or ``"mean"``.
        n: real directions scored.
        fraction: their share above the calibrated cut.
        control_heldout: the held-out control's share above it.
        gap, gap_low, gap_high: ``fraction - control_heldout`` with its 95% interval
            (the mean row: means of the blocks', no interval).
        high_norm_share: share of the real directions' top-``k`` tokens among the
            :data:`TOP_NORM_PERCENT` per cent largest unembedding norms.
    """

    projection: str
    matrix: str
    n: int
    fraction: float
    control_heldout: float
    gap: float
    gap_low: float
    gap_high: float
    high_norm_share: float

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (rounded; ``None`` for a missing interval)."""

        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 4)

        return {
            "projection": self.projection,
            "matrix": self.matrix,
            "n": self.n,
            "fraction": r(self.fraction),
            "control_heldout": r(self.control_heldout),
            "gap": r(self.gap),
            "gap_low": r(self.gap_low),
            "gap_high": r(self.gap_high),
            "high_norm_share": r(self.high_norm_share),
        }


def high_norm_share(
    analysis: Analysis,
    kind: str,
    layers: Sequence[int],
    n: int,
    k: int,
    percent: float = TOP_NORM_PERCENT,
) -> float:
    """Share of the top-``k`` tokens of the first ``n`` directions of ``kind``'s
    components at ``layers`` that are among the ``percent`` per cent largest unembedding
    norms (``analysis.tokens.norm``); ``nan`` without norms or directions.

    Reads the cached ends, so the entry must hold ``n`` directions per component and
    ``k`` tokens per end.
    """
    norm = analysis.tokens.norm
    if norm is None:
        return float("nan")
    high = ~norm_mask(norm, percent)
    res = kind_result(analysis, kind)
    m = res.n_projected
    if n > m or k > analysis.svd.k:
        raise ValueError(f"the entry holds {m} directions and {analysis.svd.k} tokens per end")
    keep = set(layers)
    rows = [
        c * m + i
        for c, (layer, _) in enumerate(res.decomposition.components)
        if layer in keep
        for i in range(n)
    ]
    if not rows:
        return float("nan")
    top = res.tops.top_idx[torch.tensor(rows), :k].long()
    return float(high[top].float().mean())


def projection_gaps(
    raw: ModelWeights,
    tokenizer: Any,
    settings: Settings,
    projections: Sequence[str] = PROJECTIONS,
    kinds: Sequence[str] = SWEEP_KINDS,
    layers: Sequence[int] | None = None,
    n: int = 30,
    k: int = 15,
    rate: float = DEFAULT_RATE,
    labeller: OfflineLabeller | None = None,
    progress: Progress = quiet,
) -> list[ProjectionGap]:
    """Per projection, per block of ``kinds`` and their mean: the calibrated gap and the
    high-norm share (module docstring). Nothing is written to the cache.

    ``layers`` (default: all) are the layers labelled; ``n`` directions per component
    and ``k`` tokens per direction, as ``python -m core label``.
    """
    out: list[ProjectionGap] = []
    lab = labeller
    kinds = [kd for kd in kinds if kd in raw.kinds()]
    for p_i, projection in enumerate(projections):
        progress(p_i / len(projections), f"{projection}: decompose and project")
        s = settings.replace(projection=projection, kinds=tuple(kinds), n_project=n)
        a = analysis_from_weights(raw, tokenizer, s, use_cache=False)
        if lab is None:
            lab = offline_labeller(a)
        ls = list(layers) if layers is not None else list(range(a.meta.n_layers))
        progress((p_i + 0.5) / len(projections), f"{projection}: labelling")
        labels = sweep_offline(a, kinds, ls, n, k, control=True, labeller=lab)
        records = [x.to_record(a.meta.name, a.meta.weights_hash, a.settings) for x in labels]
        rows = {r.matrix: r for r in calibrated_fractions(records, rate=rate)}
        block_rows = []
        for kind in kinds:
            cf = rows.get(kind)
            if cf is None:
                continue
            c = cf.calibration
            block_rows.append(
                ProjectionGap(
                    projection,
                    kind,
                    cf.n,
                    cf.fraction,
                    c.heldout_rate if c.n_heldout else float("nan"),
                    cf.gap,
                    cf.gap_low,
                    cf.gap_high,
                    high_norm_share(a, kind, ls, n, k),
                )
            )
        out += block_rows
        if block_rows:
            out.append(_mean_row(projection, block_rows))
    progress(1.0, "done")
    return out


def _mean_row(projection: str, rows: Sequence[ProjectionGap]) -> ProjectionGap:
    def mean(xs: list[float]) -> float:
        xs = [x for x in xs if not math.isnan(x)]
        return sum(xs) / len(xs) if xs else float("nan")

    return ProjectionGap(
        projection,
        MEAN_ROW,
        sum(r.n for r in rows),
        mean([r.fraction for r in rows]),
        mean([r.control_heldout for r in rows]),
        mean([r.gap for r in rows]),
        float("nan"),
        float("nan"),
        mean([r.high_norm_share for r in rows]),
    )


def best_projection(rows: Sequence[ProjectionGap]) -> str | None:
    """The projection with the largest mean gap (its ``"mean"`` row); ``None`` if none."""
    means = [r for r in rows if r.matrix == MEAN_ROW and not math.isnan(r.gap)]
    if not means:
        return None
    return max(means, key=lambda r: r.gap).projection
