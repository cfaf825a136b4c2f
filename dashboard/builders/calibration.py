"""Interpretable fractions with the labeller's cut calibrated against the random control.

Within one model and labeller, each block's cut is fitted per end (top and bottom) on
half of the same end's control scores, so that the control is called interpretable at
the stated rate. The other half
checks that rate. The weights' fraction above the cut and its gap to the held-out control
come with a 95% interval (:mod:`core.label.calibrate`). Only labellers that store a score
(the offline labeller's z) can be calibrated. Plain data in, ``pd.DataFrame`` or
``alt.Chart`` out; no Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import altair as alt
import pandas as pd
from core.label.calibrate import DEFAULT_RATE, calibrated_fractions
from core.label.store import ENDS, LabelRecord
from core.settings import BLOCK_NAMES

from dashboard.builders.statistics import BLOCK_ORDER, END_ROW

COLUMNS = ["model", "labeller", "block", "end", "threshold", "n", "interpretable",
           "uncalibrated", "n control", "control (held out)", "gap", "gap low",
           "gap high"]  # fmt: skip


def _records(df: pd.DataFrame) -> list[LabelRecord]:
    cols = [f.name for f in fields(LabelRecord) if f.name != "timestamp"]
    rows = df[cols].astype(object).where(df[cols].notna(), None).to_dict("records")
    return [LabelRecord(**row) for row in rows]


def calibrated(
    df: pd.DataFrame, by: Sequence[str] = (), rate: float = DEFAULT_RATE
) -> pd.DataFrame:
    """:func:`core.label.calibrate.calibrated_fractions` of the frame's verdicts (``by``:
    ``()`` per block and end, ``("index",)`` per singular-vector index too) as a table.

    Returns:
        columns :data:`COLUMNS` (``index`` after ``end`` when by index); ``interpretable``
        and ``uncalibrated`` are shares; a block's top end before its bottom end; no rows
        when nothing has a score and a control.
    """
    by_index = "index" in by
    cols = [*COLUMNS[:4], *(["index"] if by_index else []), *COLUMNS[4:]]
    rows = [
        [
            f.model,
            f.labeller,
            BLOCK_NAMES.get(f.matrix, f.matrix),
            f.end,
            *([f.index] if by_index else []),
            f.calibration.threshold,
            f.n,
            f.fraction,
            f.uncalibrated,
            f.calibration.n_heldout,
            f.calibration.heldout_rate,
            f.gap,
            f.gap_low,
            f.gap_high,
        ]  # fmt: skip
        for f in calibrated_fractions(_records(df), by_index, rate)
    ]
    return pd.DataFrame(rows, columns=cols)


def gap_chart(table: pd.DataFrame, x: str = "block") -> alt.LayerChart | alt.FacetChart:
    """Real-minus-control gap per ``x`` with its 95% interval, one colour per labeller;
    zero is marked. ``block``: the two ends side by side in each block (circle: top,
    square: bottom); ``index``: one panel per block and end."""
    sort = BLOCK_ORDER if x == "block" else None
    kind = "N" if x == "block" else "Q"
    tooltip: list[object] = ["block"] if x != "block" else []
    tooltip += [
        x,
        "end",
        "labeller",
        alt.Tooltip("gap:Q", format="+.1%"),
        alt.Tooltip("gap low:Q", format="+.1%"),
        alt.Tooltip("gap high:Q", format="+.1%"),
        alt.Tooltip("interpretable:Q", format=".1%", title="weights"),
        alt.Tooltip("control (held out):Q", format=".1%"),
        alt.Tooltip("threshold:Q", format=".2f"),
    ]
    enc: dict[str, object] = {
        "x": alt.X(
            f"{x}:{kind}",
            title="singular vector index" if x == "index" else x,
            sort=sort,
            axis=alt.Axis(labelAngle=0) if x == "block" else alt.Axis(),
        ),
        "color": alt.Color("labeller:N"),
        "tooltip": tooltip,
    }
    if x == "block":
        enc["xOffset"] = alt.XOffset("end:N", sort=list(ENDS), scale=alt.Scale(padding=0.5))
    y = alt.Y("gap:Q", title="gap", axis=alt.Axis(format="%"))
    base = alt.Chart()
    shape = alt.Shape(
        "end:N",
        sort=list(ENDS),
        scale=alt.Scale(domain=list(ENDS), range=["circle", "square"]),
        legend=alt.Legend(symbolFillColor="grey", symbolStrokeColor="grey"),
    )
    points = base.mark_point(filled=True, size=60, opacity=1).encode(y=y, shape=shape, **enc)
    bars = base.mark_rule().encode(y="gap low:Q", y2="gap high:Q", **enc)
    zero = base.mark_rule(strokeDash=[3, 3], color="grey").encode(y=alt.datum(0))
    chart = alt.layer(zero, bars, points, data=table)
    if x == "block":
        return chart.properties(width=alt.Step(80), height=240)
    return chart.properties(width=240, height=180).facet(
        column=alt.Column("block:N", sort=BLOCK_ORDER, title=None), row=END_ROW
    )
