"""A direction's dataset examples: contexts with the activating token, coloured by the
activation, and the activation histogram over the corpus.

Corpus text is shown as dataframe cells (plain text, never markup or HTML).
"""

from __future__ import annotations

import altair as alt
import pandas as pd
from core.activations import DirectionExamples, Example
from pandas.io.formats.style import Styler

from dashboard.builders.grid import _cell_css

#: Shown for a line break inside a context (cells are one line).
NEWLINE = " ⏎ "


def _text(s: str) -> str:
    return s.replace("\r", "").replace("\n", NEWLINE)


def example_frame(examples: tuple[Example, ...]) -> pd.DataFrame:
    """One row per example: activation, the context before the token, the token (a
    leading space shown as ``␣``), the context after it, source and document id."""
    rows = [
        {
            "activation": ex.value,
            "before": _text("".join(ex.tokens[: ex.at])),
            "token": _text(ex.tokens[ex.at]).replace(" ", "␣", 1)
            if ex.tokens[ex.at].startswith(" ")
            else _text(ex.tokens[ex.at]),
            "after": _text("".join(ex.tokens[ex.at + 1 :])),
            "source": ex.source,
            "doc": ex.doc,
        }
        for ex in examples
    ]
    cols = ["activation", "before", "token", "after", "source", "doc"]
    return pd.DataFrame(rows, columns=cols, index=pd.RangeIndex(1, len(rows) + 1, name="rank"))


def style_examples(frame: pd.DataFrame, scale: float) -> Styler:
    """``frame`` with its token cells coloured by the activation (blue positive, red
    negative; strength relative to ``scale``, the direction's largest |activation|)."""
    css = pd.DataFrame("", index=frame.index, columns=frame.columns)
    css["token"] = [_cell_css(v, scale) + "; font-weight: bold" for v in frame["activation"]]
    return frame.style.apply(lambda _: css, axis=None).format({"activation": "{:.4g}"})


def scale_of(view: DirectionExamples) -> float:
    """The largest |activation| among the direction's examples (the colour scale)."""
    vals = [abs(e.value) for e in view.top + view.bottom]
    return max(vals, default=0.0)


def histogram_frame(view: DirectionExamples) -> pd.DataFrame:
    """The histogram's bins: ``lo``, ``hi``, ``count`` and ``share`` of tokens."""
    n = len(view.hist)
    width = (view.hist_hi - view.hist_lo) / max(1, n)
    total = max(1, sum(view.hist))
    return pd.DataFrame(
        {
            "lo": [view.hist_lo + i * width for i in range(n)],
            "hi": [view.hist_lo + (i + 1) * width for i in range(n)],
            "count": list(view.hist),
            "share": [c / total for c in view.hist],
        }
    )


def histogram_chart(view: DirectionExamples) -> alt.Chart:
    """Bars of the histogram (log-scaled counts: the tails are what matters)."""
    data = histogram_frame(view)
    data["count1"] = data["count"] + 1
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("lo:Q", bin="binned", title="activation"),
            x2="hi:Q",
            y=alt.Y("count1:Q", scale=alt.Scale(type="log"), title="tokens (+1, log scale)"),
            tooltip=["lo", "hi", "count", alt.Tooltip("share:Q", format=".2%")],
        )
        .properties(height=180)
    )
