"""Singular value spectra: a long-form table and its Altair chart.

One row per (series, index): the singular values of a component, optionally overlaid
with the other heads of its layer or the same component in every layer, next to the
random Gaussian control of matched shape (one per layer, stored as head 0).
"""

from __future__ import annotations

from typing import Any, Literal

import altair as alt
import pandas as pd
from core.analysis import Analysis
from core.model.noise import noise_floor, noise_for_model
from core.query import kind_result
from core.random_control import control_decomposition
from core.settings import HEAD_KINDS

Overlay = Literal["component", "heads", "layers"]
OVERLAYS: dict[str, str] = {
    "component": "this component",
    "heads": "all heads of this layer",
    "layers": "every layer",
}
#: The selection parameter of the weights panel: a click picks a point.
PICK = "pick_point"
WEIGHTS_COLOUR = "#1f77b4"
CONTROL_COLOUR = "#777777"


def _name(kind: str, layer: int, head: int | None) -> str:
    if kind == "embed":
        return "embedding"
    return f"L{layer} H{head}" if head is not None else f"L{layer}"


def noise_floors(
    a: Analysis, kind: str, comps: list[tuple[int, int | None]]
) -> dict[tuple[int, int | None], float]:
    """The quantization noise floor of each component (empty when the model's weights
    were not quantized); see :mod:`core.model.noise`."""
    noise = noise_for_model(a.settings.model)
    if noise is None:
        return {}
    stored = (a.noise_floors or {}).get(kind)
    if stored is not None:  # kept by the cache entry: no model load
        d = kind_result(a, kind).decomposition
        return {c: float(stored[d.index(c[0], c[1])]) for c in comps}
    return {c: noise_floor(noise, a.raw, a.weights, kind, c[0], c[1]) for c in comps}


def spectrum_frame(
    a: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    overlay: Overlay = "component",
    control: bool = True,
) -> pd.DataFrame:
    """Singular values of the selected component(s) and their controls, long form.

    Returns:
        columns ``series`` (str), ``layer``, ``head`` (nullable int), ``index`` (0-based
        position), ``value`` (singular value), ``degenerate`` (bool: within the
        degeneracy tolerance of a neighbour), ``control`` (bool), ``selected`` (bool:
        the selected component itself), ``floor`` (its quantization noise floor, NaN
        when the weights were not quantized) and ``resolvable`` (bool: the value is
        above the floor, or there is none). Rows per component: the rank (``d_head``
        for OV/QK). Sorted by control, series, index.
    """
    head = head if kind in HEAD_KINDS else None
    d = kind_result(a, kind).decomposition
    if overlay == "heads" and kind in HEAD_KINDS:
        comps = [c for c in d.components if c[0] == layer]
    elif overlay == "layers":
        comps = [c for c in d.components if c[1] == head]
    else:
        comps = [(layer, head)]
    parts: list[dict[str, Any]] = []
    floors = noise_floors(a, kind, comps)
    for c in comps:
        row = d.index(c[0], c[1])
        s = d.S[row].tolist()
        deg = d.degenerate[row].tolist()
        floor = floors.get(c, float("nan"))
        for i, (v, g) in enumerate(zip(s, deg)):
            parts.append(
                {
                    "series": _name(kind, c[0], c[1]),
                    "layer": c[0],
                    "head": c[1],
                    "index": i,
                    "value": float(v),
                    "degenerate": bool(g),
                    "control": False,
                    "selected": c == (layer, head),
                    "floor": floor,
                    "resolvable": not float(v) < floor,
                }
            )
    if control:
        cd = control_decomposition(a, kind)
        for lay in sorted({c[0] for c in comps}):
            row = cd.index(lay, 0 if kind in HEAD_KINDS else None)
            for i, (v, g) in enumerate(zip(cd.S[row].tolist(), cd.degenerate[row].tolist())):
                parts.append(
                    {
                        "series": f"control {_name(kind, lay, None)}",
                        "layer": lay,
                        "head": None,
                        "index": i,
                        "value": float(v),
                        "degenerate": bool(g),
                        "control": True,
                        "selected": lay == layer,
                        "floor": float("nan"),
                        "resolvable": True,
                    }
                )
    df = pd.DataFrame(parts)
    df["head"] = df["head"].astype("Int64")
    return df.sort_values(["control", "series", "index"], kind="stable").reset_index(drop=True)


def spectrum_chart(
    df: pd.DataFrame,
    log: bool = True,
    cut: int | None = None,
    control: bool = False,
    height: int = 320,
) -> Any:
    """One panel: the real spectra (``control=False``) or the random controls.

    Draw both panels side by side: they share the y domain (computed from all of
    ``df``), so the two can be compared by eye. ``cut`` keeps indices below it.
    Near-degenerate values are drawn as red rings; the tooltip gives series, index and
    value. Where the weights were quantized, both panels draw the selected component's
    noise floor as a horizontal rule, and the weights panel marks values under it with
    grey crosses ("not resolvable"). The chart fills its container's width.
    """
    if cut is not None:
        df = df[df["index"] < cut]
    floors = df.loc[df["selected"] & ~df["control"], "floor"].dropna()
    floor = float(floors.iloc[0]) if len(floors) else None
    # Exact zeros (rank-deficient products) cannot sit on a log axis; the floor must.
    values = df["value"][df["value"] > 0] if log else df["value"]
    lo = float(values.min()) if len(values) else 1e-6
    hi = float(df["value"].max())
    if floor is not None and floor > 0:
        lo, hi = min(lo, floor), max(hi, floor)
    domain = [lo / 1.2, hi * 1.2] if log else [0.0, hi * 1.05]
    side = df[df["control"] == control]
    many = side["series"].nunique() > 1
    scale = alt.Scale(type="log" if log else "linear", domain=domain, nice=False)
    y = alt.Y("value:Q", title="singular value", scale=scale)
    x = alt.X("index:Q", title="index (by singular value)", axis=alt.Axis(tickMinStep=1))
    tooltip = [
        alt.Tooltip("series:N"),
        alt.Tooltip("index:Q"),
        alt.Tooltip("value:Q", format=".4g"),
        alt.Tooltip("degenerate:N", title="near-degenerate"),
    ]
    if floor is not None and not control:
        tooltip.append(alt.Tooltip("resolvable:N", title="above the noise floor"))
    hover = alt.selection_point(
        name="hover_control" if control else "hover_weights",
        fields=["series"],
        on="pointerover",
        empty=False,
    )
    color: Any = (
        alt.Color("series:N", legend=alt.Legend(title=None, orient="right", symbolLimit=40))
        if many
        else alt.value(CONTROL_COLOUR if control else WEIGHTS_COLOUR)
    )
    base = alt.Chart(side)
    line = base.mark_line(strokeDash=[4, 3] if control else [1, 0]).encode(
        x=x,
        y=y,
        detail="series:N",
        color=color,
        opacity=alt.condition(
            alt.datum.selected | hover, alt.value(1.0), alt.value(0.35 if many else 1.0)
        ),
        strokeWidth=alt.condition(alt.datum.selected, alt.value(2.5), alt.value(1.2)),
    )
    points = base.mark_circle(size=36, cursor="default" if control else "pointer").encode(
        x=x, y=y, color=color, tooltip=tooltip
    )
    if not control:
        # A click on a point opens its component's direction (the page reads PICK).
        points = points.add_params(
            alt.selection_point(name=PICK, fields=["layer", "head", "index"], on="click")
        )
    degenerate = (
        base.transform_filter(alt.datum.degenerate)
        .mark_point(size=120, color="#d62728", strokeWidth=2)
        .encode(x=x, y=y, tooltip=tooltip)
    )
    title = "random Gaussian control (same shape)" if control else "weights"
    layers: list[Any] = [line, points.add_params(hover), degenerate]
    if floor is not None and floor > 0:
        rule = pd.DataFrame({"floor": [floor], "label": ["quantization noise floor"]})
        layers.append(
            alt.Chart(rule)
            .mark_rule(color="#ff7f0e", strokeDash=[6, 3], strokeWidth=1.5)
            .encode(
                y=alt.Y("floor:Q", scale=scale),
                tooltip=[alt.Tooltip("label:N", title=""), alt.Tooltip("floor:Q", format=".4g")],
            )
        )
        if not control:
            layers.append(
                base.transform_filter(~alt.datum.resolvable)
                .mark_point(shape="cross", size=70, color="#888888", filled=True)
                .encode(x=x, y=y, tooltip=tooltip)
            )
    return alt.layer(*layers, title=title).properties(width="container", height=height)


def picked_point(
    selection: dict[str, list[dict[str, Any]]] | None, kind: str
) -> tuple[str, int, int | None, int] | None:
    """The ``(kind, layer, head, index)`` of the weights point a click picked (the
    ``selection`` of ``st.vega_lite_chart(..., on_select="rerun")``), or ``None``."""
    rows = (selection or {}).get(PICK) or []
    if not rows or not isinstance(rows[0], dict) or "index" not in rows[0]:
        return None
    r = rows[0]
    head = r.get("head")
    return (
        kind,
        int(r.get("layer") or 0),
        None if head is None or kind not in HEAD_KINDS else int(head),
        int(r["index"]),
    )


def caption(df: pd.DataFrame, label: str, rank: int, control: bool) -> str:
    """The text under the charts, naming the colours the charts of ``df`` really use."""
    many = df[~df["control"]]["series"].nunique() > 1
    many_control = df[df["control"]]["series"].nunique() > 1
    weights = (
        "One colour per component (legend), the selected one drawn thicker"
        if many
        else "Blue: the weights"
    )
    parts = [f"{label}: rank {rank}. {weights}."]
    if control:
        colours = "one colour per layer" if many_control else "grey"
        parts.append(
            f"Right panel, dashed ({colours}): a random Gaussian matrix of the same shape "
            "(one per layer)."
        )
    parts.append(
        "Red rings: near-degenerate singular values (within the tolerance of a neighbour); "
        "their vectors are only defined up to a rotation. Hover for values; click a point "
        "of the weights to open that direction on the grid."
    )
    return " ".join(parts)


def spectrum_view(
    a: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    overlay: Overlay = "component",
    control: bool = True,
    log: bool = True,
    cut: int | None = None,
    side: bool = False,
) -> Any:
    """:func:`spectrum_frame` drawn by :func:`spectrum_chart` (``side``: the control panel)."""
    df = spectrum_frame(a, kind, layer, head, overlay, control)
    return spectrum_chart(df, log, cut, control=side)
