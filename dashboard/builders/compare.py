"""The Compare page's tables and charts, built from core's JSON forms of a
:class:`core.compare.Match` and a :class:`core.compare.Trajectory` (no Streamlit).

Checkpoints are named by their folder's last part (``step-000128``) on the charts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

#: The colour scale of every |cos| heatmap: 0 (unrelated) to 1 (the same direction).
COS_SCALE = alt.Scale(domain=[0, 1], scheme="viridis")


def short(name: str) -> str:
    """A checkpoint's short name: the last part of its path (a hub id@revision as is)."""
    p = Path(name)
    return p.name if p.is_absolute() else name


def match_frame(
    match: dict[str, Any], tops_a: Sequence[Sequence[str]], tops_b: Sequence[Sequence[str]]
) -> pd.DataFrame:
    """One row per matched pair: A's index, B's index, ``|cos|``, sign, both singular
    values, whether it is matched, and both directions' top tokens.

    ``tops_a[i]`` are direction ``i``'s top tokens in A (``tops_b`` likewise for B).
    """
    rows = []
    for p in match["pairs"]:
        rows.append(
            {
                "A": p["a"],
                "B": p["b"],
                "|cos|": p["cos"],
                "sign": "+" if p["sign"] > 0 else "−",
                "matched": p["cos"] >= match["threshold"],
                "σ A": p["sigma_a"],
                "σ B": p["sigma_b"],
                "top tokens A": " ".join(tops_a[p["a"]]) if p["a"] < len(tops_a) else "",
                "top tokens B": " ".join(tops_b[p["b"]]) if p["b"] < len(tops_b) else "",
            }
        )
    return pd.DataFrame(rows)


def cos_heatmap(cos: Sequence[Sequence[float]], title: str) -> alt.Chart:
    """``|cos|`` of every pair of directions (rows A, columns B) as a heatmap."""
    df = pd.DataFrame(
        [{"A": i, "B": j, "|cos|": abs(v)} for i, row in enumerate(cos) for j, v in enumerate(row)]
    )
    return (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x=alt.X("B:O", title="direction in B"),
            y=alt.Y("A:O", title="direction in A"),
            color=alt.Color("|cos|:Q", scale=COS_SCALE),
            tooltip=["A", "B", alt.Tooltip("|cos|:Q", format=".3f")],
        )
    )


def steps_heatmap(traj: dict[str, Any]) -> alt.Chart:
    """``|cos|`` of each direction with its partner in the previous checkpoint (rows: the
    later checkpoint of each consecutive pair)."""
    names = [short(n) for n in traj["checkpoints"]]
    df = pd.DataFrame(
        [
            {"checkpoint": names[t + 1], "order": t + 1, "direction": j, "|cos|": v}
            for t, row in enumerate(traj["consecutive_cos"])
            for j, v in enumerate(row)
        ]
    )
    return (
        alt.Chart(df, title="Matched |cos| with the previous checkpoint")
        .mark_rect()
        .encode(
            x=alt.X("direction:O"),
            y=alt.Y("checkpoint:O", sort=names[1:], title=None),
            color=alt.Color("|cos|:Q", scale=COS_SCALE),
            tooltip=["checkpoint", "direction", alt.Tooltip("|cos|:Q", format=".3f")],
        )
    )


def drift_heatmap(
    drift: Sequence[Sequence[float]], names: Sequence[str], components: Sequence[str]
) -> alt.Chart:
    """Mean matched ``|cos|`` of every component's top directions with the previous
    checkpoint: which components move when."""
    labels = [short(n) for n in names]
    df = pd.DataFrame(
        [
            {"checkpoint": labels[t + 1], "component": components[c], "mean |cos|": v}
            for t, row in enumerate(drift)
            for c, v in enumerate(row)
        ]
    )
    return (
        alt.Chart(df, title="Every component: mean matched |cos| with the previous checkpoint")
        .mark_rect()
        .encode(
            x=alt.X("component:O", sort=list(components)),
            y=alt.Y("checkpoint:O", sort=labels[1:], title=None),
            color=alt.Color("mean |cos|:Q", scale=COS_SCALE),
            tooltip=["checkpoint", "component", alt.Tooltip("mean |cos|:Q", format=".3f")],
        )
    )


def trajectory_frame(traj: dict[str, Any], direction: int) -> pd.DataFrame:
    """Direction ``direction`` of the final checkpoint back through training: per
    checkpoint its partner's index, ``|cos|`` and top tokens."""
    d = traj["directions"][direction]
    return pd.DataFrame(
        {
            "checkpoint": [short(n) for n in traj["checkpoints"]],
            "partner": d["partner"],
            "|cos|": d["cos"],
            "top tokens": [" ".join(t) for t in d["top"]],
        }
    )


def trajectory_chart(traj: dict[str, Any], directions: Sequence[int]) -> alt.Chart:
    """``|cos|`` of the chosen final directions' partners at each checkpoint."""
    names = [short(n) for n in traj["checkpoints"]]
    df = pd.DataFrame(
        [
            {"checkpoint": names[i], "order": i, "direction": str(j), "|cos|": c}
            for j in directions
            for i, c in enumerate(traj["directions"][j]["cos"])
        ]
    )
    return (
        alt.Chart(df, title="Each final direction's best partner through training")
        .mark_line(point=True)
        .encode(
            x=alt.X("checkpoint:O", sort=names, title=None),
            y=alt.Y("|cos|:Q", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("direction:N"),
            tooltip=["checkpoint", "direction", alt.Tooltip("|cos|:Q", format=".3f")],
        )
    )


def spectra_chart(
    spectra: Sequence[Sequence[float]], names: Sequence[str], title: str
) -> alt.Chart:
    """Singular values at each checkpoint, one line per checkpoint (log scale)."""
    labels = [short(n) for n in names]
    df = pd.DataFrame(
        [
            {"checkpoint": labels[t], "index": i, "singular value": max(v, 1e-12)}
            for t, row in enumerate(spectra)
            for i, v in enumerate(row)
        ]
    )
    return (
        alt.Chart(df, title=title)
        .mark_line()
        .encode(
            x=alt.X("index:Q"),
            y=alt.Y("singular value:Q", scale=alt.Scale(type="log")),
            color=alt.Color("checkpoint:N", sort=labels, scale=alt.Scale(scheme="viridis")),
            tooltip=["checkpoint", "index", alt.Tooltip("singular value:Q", format=".4g")],
        )
    )


def dictionary_chart(points: Sequence[dict[str, Any]]) -> alt.Chart:
    """The embedding dictionary's unexplained fraction at each checkpoint (training order),
    solid for the weights and dashed for the random matrix of the same shape and scale."""
    labels = [short(p["checkpoint"]) for p in points]
    df = pd.DataFrame(
        [
            {"checkpoint": labels[i], "order": i, "matrix": who, "fvu": p[field]}
            for i, p in enumerate(points)
            for who, field in (("W_E", "fvu"), ("random control", "control_fvu"))
        ]
    )
    k, nnz = (points[0]["n_atoms"], points[0]["nnz"]) if points else (0, 0)
    return (
        alt.Chart(df, title=f"Embedding dictionary ({k} atoms, {nnz} non-zeros per token)")
        .mark_line(point=True)
        .encode(
            x=alt.X("checkpoint:N", sort=labels, title=None),
            y=alt.Y("fvu:Q", title="unexplained fraction", scale=alt.Scale(domain=[0, 1])),
            strokeDash=alt.StrokeDash("matrix:N", sort=["W_E", "random control"], title=None),
            tooltip=["checkpoint", "matrix", alt.Tooltip("fvu:Q", format=".3f")],
        )
    )
