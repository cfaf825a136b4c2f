"""A labeller calibrated against the random control.

A labeller's own cut (the offline labeller's ``z >= 2``) promises a false-positive rate
against *its* null: random vocabulary sets. The random control is a different null:
random directions projected through the real ``W_U``, which has structure of its own.
The controls are called interpretable far more often than the promised rate. Calibrating
sets the cut so that the control is called interpretable at a stated ``rate``. Then
"interpretable" means "more coherent than all but ``rate`` of what random directions
through this model's unembedding give".

The cut is fitted per block *and per end*: a direction's top and bottom ends (see
:mod:`core.label.store`) are scored separately, and each end of the weights is compared
with the same end of the control, since the sign rule that names the ends treats real
and random directions alike. It is fitted on a random half of the control scores and
checked on the other half (:class:`Calibration`). Real-against-control differences carry a 95% interval
(:func:`gap_interval`: Newcombe's hybrid score interval for a difference of two
independent proportions, method 10 of Newcombe 1998, built from Wilson intervals).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.label.store import ENDS, LabelRecord

#: The stated false-positive rate on the control.
DEFAULT_RATE = 0.05
#: Seed of the fit/held-out split of the control scores.
SPLIT_SEED = 0
#: The normal quantile of a two-sided 95% interval.
Z95 = 1.959963984540054


def fit_threshold(control: np.ndarray, rate: float) -> float:
    """The cut ``t`` at which at most ``rate`` of ``control`` scores exceed it
    (interpretable means ``score > t``): the ``ceil((1 - rate) n)``-th smallest score.

    Raises:
        ValueError: no scores, or ``rate`` outside ``(0, 1)``.
    """
    s = np.sort(np.asarray(control, dtype=float))
    s = s[np.isfinite(s)]
    if len(s) == 0:
        raise ValueError("no control scores to calibrate on")
    if not 0.0 < rate < 1.0:
        raise ValueError(f"rate must be between 0 and 1, not {rate}")
    k = max(1, math.ceil((1.0 - rate) * len(s) - 1e-9))
    return float(s[k - 1])


@dataclass(frozen=True)
class Calibration:
    """A cut fitted on half of a block's control scores, checked on the other half.

    Attributes:
        rate: the stated false-positive rate.
        threshold: interpretable means ``score > threshold``.
        n_fit: control scores the cut was fitted on.
        heldout_rate: the share of the other half above the cut (the check).
        n_heldout: control scores in the other half.
    """

    rate: float
    threshold: float
    n_fit: int
    heldout_rate: float
    n_heldout: int


def calibrate(
    control: np.ndarray, rate: float = DEFAULT_RATE, seed: int = SPLIT_SEED
) -> Calibration:
    """Fit the cut on a seeded random half of ``control`` and measure the held-out rate.

    With fewer than 4 scores the cut is fitted on all of them and ``n_heldout`` is 0.
    """
    scores = np.asarray(control, dtype=float)
    scores = scores[np.isfinite(scores)]
    if len(scores) < 4:
        t = fit_threshold(scores, rate)
        return Calibration(rate, t, len(scores), float("nan"), 0)
    order = np.random.default_rng(seed).permutation(len(scores))
    half = len(scores) // 2
    fit, held = scores[order[:half]], scores[order[half:]]
    t = fit_threshold(fit, rate)
    return Calibration(rate, t, len(fit), float((held > t).mean()), len(held))


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (``(nan, nan)`` for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def gap_interval(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``p1 - p2`` for ``p1 = x1/n1`` (real) and ``p2 = x2/n2`` (control), with Newcombe's
    hybrid score interval; ``nan``s when either group is empty.
    """
    if n1 == 0 or n2 == 0:
        return float("nan"), float("nan"), float("nan")
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, lo, hi


@dataclass(frozen=True)
class CalibratedFraction:
    """One block's (or one index's) share of interpretable directions, on one end, under
    the cut calibrated on the same end of that block's control.

    Attributes:
        model, labeller, matrix: whose verdicts.
        end: which end of the directions (``top`` or ``bottom``).
        index: the singular-vector index, or ``None`` for the whole block.
        calibration: the block's cut and its held-out check.
        n: directions of the weights scored.
        interpretable: how many of them score above the cut.
        uncalibrated: the share the labeller's own verdict calls interpretable (``nan``
            when it gave none).
        gap, gap_low, gap_high: weights' share minus the held-out control's, with its 95%
            interval.
    """

    model: str
    labeller: str
    matrix: str
    index: int | None
    calibration: Calibration
    n: int
    interpretable: int
    uncalibrated: float
    gap: float
    gap_low: float
    gap_high: float
    end: str = "top"

    @property
    def fraction(self) -> float:
        """The weights' share above the cut."""
        return self.interpretable / self.n if self.n else float("nan")

    def to_json(self) -> dict[str, object]:
        """Plain JSON (rounded)."""
        c = self.calibration
        return {
            "model": self.model,
            "labeller": self.labeller,
            "matrix": self.matrix,
            "end": self.end,
            "index": self.index,
            "rate": c.rate,
            "threshold": round(c.threshold, 4),
            "n": self.n,
            "fraction": round(self.fraction, 4),
            "uncalibrated": None if math.isnan(self.uncalibrated) else round(self.uncalibrated, 4),
            "control_heldout": None if c.n_heldout == 0 else round(c.heldout_rate, 4),
            "n_control_heldout": c.n_heldout,
            "gap": round(self.gap, 4),
            "gap_low": round(self.gap_low, 4),
            "gap_high": round(self.gap_high, 4),
        }


def calibrated_fractions(
    records: Sequence[LabelRecord], by_index: bool = False, rate: float = DEFAULT_RATE
) -> list[CalibratedFraction]:
    """Per model, labeller, matrix and end (and index, with ``by_index``) of ``records``:
    the calibrated share and its gap to the held-out control of the same end (top end
    first). Records without a score are left out, and so is a block's end with fewer
    than 4 scored control directions.
    """
    groups: dict[tuple[str, str, str, int], list[LabelRecord]] = {}
    for r in records:
        if r.score is not None and math.isfinite(r.score):
            groups.setdefault((r.model, r.labeller, r.matrix, ENDS.index(r.end)), []).append(r)
    out = []
    for (model, labeller, matrix, e), recs in sorted(groups.items()):
        ctrl = np.array([r.score for r in recs if r.control], dtype=float)
        if len(ctrl) < 4:
            continue
        cal = calibrate(ctrl, rate)
        real = [r for r in recs if not r.control]
        parts: dict[int | None, list[LabelRecord]] = {}
        for r in real:
            parts.setdefault(r.index if by_index else None, []).append(r)
        held_above = round(cal.heldout_rate * cal.n_heldout) if cal.n_heldout else 0
        for index, part in sorted(parts.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
            above = sum(1 for r in part if r.score is not None and r.score > cal.threshold)
            said = [bool(r.interpretable) for r in part if r.interpretable is not None]
            d, lo, hi = gap_interval(above, len(part), held_above, cal.n_heldout)
            share = sum(said) / len(said) if said else float("nan")
            out.append(
                CalibratedFraction(
                    model,
                    labeller,
                    matrix,
                    index,
                    cal,
                    len(part),
                    above,
                    share,
                    d,
                    lo,
                    hi,
                    end=ENDS[e],
                )
            )
    return out
