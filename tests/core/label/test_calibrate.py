"""Calibration against the control: the cut's false-positive rate on held-out control
scores, the order-statistic definition, and the intervals against published values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.label.calibrate import calibrate, fit_threshold, gap_interval, wilson


def test_fit_threshold_is_the_least_cut_at_the_rate() -> None:
    rng = np.random.default_rng(1)
    for n in (7, 20, 101, 1000):
        s = rng.normal(size=n)
        for rate in (0.01, 0.05, 0.2):
            t = fit_threshold(s, rate)
            assert t in s
            assert (s > t).mean() <= rate + 1e-12
            # One order statistic lower would exceed the rate (t is the least such cut).
            lower = np.sort(s)[np.sort(s) < t]
            if len(lower):
                assert (s > lower[-1]).mean() > rate
    with pytest.raises(ValueError, match="no control scores"):
        fit_threshold(np.array([np.nan]), 0.05)
    with pytest.raises(ValueError, match="rate"):
        fit_threshold(np.ones(3), 1.5)


def test_heldout_rate_is_within_the_stated_rate() -> None:
    """On a fresh draw from the control's distribution the calibrated cut calls about
    ``rate`` interpretable: within 3 binomial standard errors, for a skewed distribution
    too (the labeller's z-scores are not normal)."""
    rng = np.random.default_rng(7)
    for draw in (rng.normal(size=4000), rng.gamma(2.0, size=4000)):
        cal = calibrate(draw, 0.05, seed=3)
        assert cal.n_fit == 2000 and cal.n_heldout == 2000
        se = math.sqrt(0.05 * 0.95 / cal.n_heldout)
        assert abs(cal.heldout_rate - 0.05) < 3 * se
        fresh = rng.normal(size=20000) if draw.min() < 0 else rng.gamma(2.0, size=20000)
        assert abs((fresh > cal.threshold).mean() - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 2000)
    tiny = calibrate(np.array([0.0, 1.0, 2.0]), 0.05)
    assert tiny.n_heldout == 0 and tiny.threshold == 2.0


def test_intervals_match_newcombe() -> None:
    """Published values: Newcombe (1998), Statistics in Medicine 17, 857-872 and 873-890."""
    lo, hi = wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    d, lo, hi = gap_interval(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)
    d, lo, hi = gap_interval(9, 10, 3, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.1705, 0.809)
    assert all(math.isnan(v) for v in gap_interval(1, 0, 1, 2))


def test_each_end_is_calibrated_on_the_same_end_of_the_control() -> None:
    """Top ends of the weights shifted above their control, bottom ends drawn like theirs;
    the two ends' controls differ, so one pooled cut would mislead on both."""
    from core.label.calibrate import calibrated_fractions
    from core.label.store import LabelRecord

    rng = np.random.default_rng(5)
    n = 600
    draws = {  # (control, end) -> scores
        (False, "top"): rng.normal(1.5, 1.0, n),
        (True, "top"): rng.normal(0.0, 1.0, n),
        (False, "bottom"): rng.normal(1.0, 1.0, n),
        (True, "bottom"): rng.normal(1.0, 1.0, n),
    }
    recs = [
        LabelRecord(
            "m",
            "h",
            "ov",
            0,
            i % 4,
            i // 4,
            "offline",
            None,
            "",
            float(v),
            control=c,
            end=e,
            processing="post",
            projection="standardized",
        )  # fmt: skip
        for (c, e), scores in draws.items()
        for i, v in enumerate(scores)
    ]
    top, bottom = calibrated_fractions(recs)
    assert (top.end, bottom.end) == ("top", "bottom")
    assert top.to_json()["end"] == "top" and bottom.to_json()["end"] == "bottom"
    for row, e in ((top, "top"), (bottom, "bottom")):
        ctrl = draws[True, e]
        real = draws[False, e]
        # The cut is one of this end's control scores, and the weights' share is a
        # direct count above it.
        assert np.isclose(ctrl, row.calibration.threshold).any()
        assert row.n == n and row.interpretable == int((real > row.calibration.threshold).sum())
        assert row.calibration.n_fit + row.calibration.n_heldout == n
    assert top.gap_low > 0.2
    assert bottom.gap_low < 0 < bottom.gap_high
    # Calibrating the bottom end on the top end's control would have found a gap.
    assert (draws[False, "bottom"] > top.calibration.threshold).mean() > 0.2
    by_index = calibrated_fractions(recs, by_index=True)
    assert {(r.end, r.index) for r in by_index} == {
        (e, i) for e in ("top", "bottom") for i in range(n // 4)
    }
