"""The Edit page's ablation sweep: each of a matrix's first directions removed alone
from the unedited model, its change of the target's log-prob beside matched random
draws. Pure functions (no Streamlit); ``compute_sweep`` takes an ``Analysis`` and the
matrix's plan, which ``dashboard.loaders.edit`` keeps per matrix.
"""

from __future__ import annotations

import altair as alt
import pandas as pd
from altair.utils.schemapi import UndefinedType
from core.analysis import Analysis
from core.edit import SweepPlan, SweepRow, run_sweep
from core.edit.baseline import RandomBaseline

from dashboard.builders.edit import CHOSEN, OTHER

#: The axis turns symlog where a random draw is this many times the largest bar.
SYMLOG_RATIO = 10.0


def compute_sweep(
    a: Analysis, plan: SweepPlan, prompt: str, target: str
) -> tuple[list[SweepRow], list[RandomBaseline]]:
    """Each direction of ``plan`` removed alone (unedited model), and each one's matched
    random draws, in shared batches."""
    return run_sweep(a, plan, prompt, target)


def sweep_frame(
    rows: list[SweepRow], chosen: set[int], baselines: list[RandomBaseline] | None = None
) -> pd.DataFrame:
    """Columns ``index``, ``sigma``, ``logprob``, ``delta``, ``chosen`` (in the edit set),
    and with ``baselines`` (one per row) ``random_mean``, ``random_max`` (the largest
    ``|Δ|`` of the draws) and ``beyond_random`` (``|delta|`` above every draw's)."""
    df = pd.DataFrame(
        {
            "index": [r.index for r in rows],
            "sigma": [r.singular_value for r in rows],
            "logprob": [r.logprob for r in rows],
            "delta": [r.delta_logprob for r in rows],
            "chosen": [r.index in chosen for r in rows],
        }
    )
    if baselines is not None:
        df["random_mean"] = [b.mean for b in baselines]
        df["random_max"] = [
            max((abs(x) for x in b.deltas), default=float("nan")) for b in baselines
        ]
        df["beyond_random"] = [
            bool(b.exceeded_by(r.delta_logprob)) for r, b in zip(rows, baselines)
        ]
    return df


def sweep_random_frame(rows: list[SweepRow], baselines: list[RandomBaseline]) -> pd.DataFrame:
    """One row per random draw of each swept direction: ``index``, ``delta``, ``edit``."""
    out = [
        {"index": r.index, "delta": x, "edit": d.spec()}
        for r, b in zip(rows, baselines)
        for d, x in zip(b.draws, b.deltas)
    ]
    return pd.DataFrame(out, columns=["index", "delta", "edit"])


def sweep_chart(df: pd.DataFrame, title: str, randoms: pd.DataFrame | None = None) -> alt.Chart:
    """Bars of Δlog p(target) per removed direction; directions in the edit set in red.

    With ``randoms`` (:func:`sweep_random_frame`) each direction's matched random draws
    are black ticks over its bar, and bars not beyond every draw are faded. Where a draw
    is over :data:`SYMLOG_RATIO` times the largest bar, the axis is symlog.
    """
    tooltip = [
        "index",
        alt.Tooltip("sigma:Q", format=".4g", title="σ"),
        alt.Tooltip("delta:Q", format="+.4f", title="Δ log p"),
        alt.Tooltip("logprob:Q", format=".4f", title="log p after"),
    ]
    enc: dict[str, object] = {}
    y_title = "Δ log p(target)"
    scale: alt.Scale | UndefinedType = alt.Undefined
    axis: alt.Axis | UndefinedType = alt.Undefined
    biggest = float(df["delta"].abs().max()) if len(df) else 0.0
    drawn = float(randoms["delta"].abs().max()) if randoms is not None and len(randoms) else 0.0
    if drawn > SYMLOG_RATIO * biggest:
        # A draw can move the target a hundred times more than any swept direction (a
        # massive-activation direction at the same index): on a linear axis the bars
        # vanish. Symlog keeps them readable, linear up to ``constant``.
        assert randoms is not None
        both = pd.concat([df["delta"], randoms["delta"]])
        ends = [min(0.0, float(both.min())), max(0.0, float(both.max()))]
        scale = alt.Scale(type="symlog", constant=max(biggest, 1e-4) / 4, domain=ends, nice=False)
        # Vega's own ticks on a symlog scale are linear steps, which bunch into a band of
        # grid lines at the far end: the ends and 0 only (the tooltips give each value).
        axis = alt.Axis(values=sorted({*ends, 0.0}), format=".2~g")
        # An axis title longer than the plot is tall pushed the chart's title out of
        # its frame in the browser: kept as short as the linear one.
        y_title = "Δ log p (symlog)"
    if "beyond_random" in df:
        tooltip.append(alt.Tooltip("beyond_random:N", title="beyond random"))
        enc["opacity"] = alt.condition(alt.datum.beyond_random, alt.value(1.0), alt.value(0.35))
    bars = (
        alt.Chart(df, title=title)
        .mark_bar()
        .encode(
            x=alt.X("index:O", title="direction removed alone"),
            y=alt.Y("delta:Q", title=y_title, scale=scale, axis=axis),
            color=alt.Color(
                "chosen:N",
                scale=alt.Scale(domain=[True, False], range=[CHOSEN, OTHER]),
                legend=alt.Legend(title="in edit set"),
            ),
            tooltip=tooltip,
            **enc,
        )
    )
    if randoms is None or randoms.empty:
        return bars.properties(height=220)
    ticks = (
        alt.Chart(randoms)
        .mark_tick(color="black", thickness=2, size=12)
        .encode(
            x="index:O",
            y="delta:Q",
            tooltip=[
                alt.Tooltip("edit:N", title="random draw"),
                alt.Tooltip("delta:Q", format="+.4f"),
            ],
        )
    )
    return (bars + ticks).properties(height=220)
