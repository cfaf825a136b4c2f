"""The comparison page's tables and chart, from a ``compare-methods`` report's JSON
(:meth:`core.decompose.report.MethodsReport.to_json`)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

#: What each curve axis means, for the chart's facets.
AXES: dict[str, str] = {
    "rank": "SVD rank",
    "nnz": "non-zeros per row (dictionary) / equal-parameter SVD",
    "K": "atoms K (dictionary) / equal-parameter SVD",
    "components": "components (NMF: token image; ICA: rows)",
}


def run_report(a: Any, matrix: str, layer: int, curves: bool, n_label: int,
               progress: Any = None) -> dict[str, Any]:  # fmt: skip
    """Run :func:`core.decompose.report.compare_methods` with the offline labeller judging
    the first ``n_label`` components (0: no labels); its JSON."""
    from core.analysis import settings_key
    from core.decompose.report import compare_methods
    from core.label.sweep import offline_judge
    from core.progress import quiet

    judge = offline_judge(a) if n_label else None
    rep = compare_methods(
        a, settings_key(a.settings), matrix, layer, None, judge, n_label,
        curves=curves, progress=progress or quiet,
    )  # fmt: skip
    return rep.to_json()


def curves_frame(report: dict[str, Any]) -> pd.DataFrame:
    """One row per curve point: ``method``, ``control``, ``series`` (method, "(control)"
    for the random matrix), ``axis``, ``x``, ``fvu``, ``params``."""
    df = pd.DataFrame(report["curves"])
    if df.empty:
        return df
    df["series"] = df["method"] + df["control"].map({True: " (control)", False: ""})
    return df[["method", "control", "series", "axis", "x", "fvu", "params"]]


def curves_chart(df: pd.DataFrame) -> alt.Chart:
    """FVU against each axis (log x), one colour per method, dashed for the controls."""
    data = df.assign(axis_name=df["axis"].map(AXES).fillna(df["axis"]))
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X("x:Q", scale=alt.Scale(type="log"), title=None),
            y=alt.Y("fvu:Q", title="FVU (fraction of squared norm unexplained)"),
            color=alt.Color("method:N", title="method"),
            strokeDash=alt.StrokeDash("control:N", title="random control"),
            detail="series:N",
            tooltip=["series", "axis", "x", alt.Tooltip("fvu:Q", format=".4f"), "params"],
        )
        .properties(width=320, height=220)
        .facet(facet=alt.Facet("axis_name:N", title=None), columns=2)
        .resolve_scale(x="independent")
    )


def interpretable_frame(report: dict[str, Any]) -> pd.DataFrame:
    """``method``, ``end`` (top / bottom), ``matrix`` (real / random control), ``judged``,
    ``interpretable`` share.
    """
    cols = ["method", "end", "matrix", "judged", "interpretable"]
    rows = [
        {
            "method": r["method"],
            "end": r["end"],
            "matrix": "random control" if r["control"] else "weights",
            "judged": r["n"],
            "interpretable": r["fraction"],
        }
        for r in report["interpretable"]
    ]
    return pd.DataFrame(rows, columns=cols)


def unseen_frame(report: dict[str, Any]) -> pd.DataFrame:
    """Dictionary atoms no top SVD direction is close to: ``atom``, ``best |cos|``, ``top tokens``."""
    atoms = report["unseen_atoms"]["atoms"]
    return pd.DataFrame(
        [
            {"atom": x["atom"], "best |cos|": x["best_cos"], "top tokens": " · ".join(x["top"])}
            for x in atoms
        ],  # fmt: skip
        columns=["atom", "best |cos|", "top tokens"],
    )
