"""The post's cluster grid: one column per singular direction, top-k tokens as rows.

Columns are ordered by singular value and named ``#i σ=…`` (``≈`` marks a
near-degenerate value, whose direction is only defined up to a rotation). Each cell
is coloured by its projection strength: blue for the positive end, red for the negative.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pandas as pd
from core.query import Direction
from pandas.io.formats.style import Styler

from dashboard.builders.names import component_label

End = Literal["top", "bottom", "both"]
ENDS: dict[str, str] = {"top": "positive end", "bottom": "negative end", "both": "both ends"}


#: Appended to the header of a highlighted direction's column(s).
MARK = " ◀ highlighted"


def column_name(d: Direction, end: str | None = None) -> str:
    """Header of a direction's column, e.g. ``#3 σ=1.25`` or ``#3 σ=1.25 ≈ −``."""
    mark = " ≈" if d.degenerate else ""
    side = {"top": " +", "bottom": " −"}.get(end or "", "")
    return f"#{d.index} σ={d.singular_value:.4g}{mark}{side}"


def grid_frames(dirs: list[Direction], end: str = "top") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The grid's tokens and their projection values, both ``k x n_columns``.

    ``end="both"`` gives two columns per direction (``+`` then ``−``). The index is the
    rank within the end (1 = strongest). Tokens are display strings (``␣`` = space).
    """
    tokens: dict[str, list[str]] = {}
    values: dict[str, list[float]] = {}
    ends = ("top", "bottom") if end == "both" else (end,)
    for d in dirs:
        for e in ends:
            cells = d.top if e == "top" else d.bottom
            name = column_name(d, e if end == "both" else None)
            tokens[name] = [c[1] for c in cells]
            values[name] = [c[2] for c in cells]
    k = max((len(v) for v in tokens.values()), default=0)
    index = pd.RangeIndex(1, k + 1, name="rank")
    return pd.DataFrame(tokens, index=index), pd.DataFrame(values, index=index)


def shown_directions(dirs: list[Direction], n: int, highlight: int | None) -> list[Direction]:
    """The first ``n`` of ``dirs`` (ordered by index), with direction ``highlight``
    moved to the front (also when its index is ``n`` or more), so that the direction a
    search hit or a link points at is the first column without scrolling."""
    first = [d for d in dirs if d.index == highlight]
    return first + [d for d in dirs[:n] if d.index != highlight]


def _cell_css(v: float, scale: float) -> str:
    if pd.isna(v) or scale <= 0:
        return ""
    a = min(abs(float(v)) / scale, 1.0)
    rgb = "31, 119, 180" if v >= 0 else "214, 39, 40"
    color = "white" if a > 0.6 else "black"
    return f"background-color: rgba({rgb}, {0.08 + 0.82 * a:.3f}); color: {color}"


def style_grid(
    tokens: pd.DataFrame,
    values: pd.DataFrame,
    highlight: int | None = None,
    dirs: list[Direction] | None = None,
) -> Styler:
    """``tokens`` coloured by ``values`` (shared scale: the largest |value| shown).

    ``highlight`` (a direction index, with ``dirs`` to find its columns) gets bold text,
    an outline where the renderer draws one, and :data:`MARK` after its header, for
    links from the search and edit pages.
    """
    scale = float(values.abs().max().max()) if values.size else 0.0
    css = values.map(lambda v: _cell_css(v, scale))
    if highlight is not None and dirs is not None:
        marked = {
            c
            for d in dirs
            if d.index == highlight
            for c in tokens.columns
            if c.startswith(f"#{d.index} ")
        }
        for c in marked:
            css[c] = css[c] + "; font-weight: bold; border: 2px solid #ff8c00"
        names = {c: c + MARK for c in marked}
        # Streamlit's grid draws no cell borders, so the header carries the mark too.
        return tokens.rename(columns=names).style.apply(
            lambda _: css.rename(columns=names), axis=None
        )
    return tokens.style.apply(lambda _: css, axis=None)


def grid_records(dirs: list[Direction], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shown directions as JSON-able data: meta plus, per direction, index, singular
    value, degeneracy, and top/bottom ``[raw token, display token, value]`` lists."""
    return {
        **(meta or {}),
        "directions": [
            {
                "index": d.index,
                "singular_value": d.singular_value,
                "degenerate": d.degenerate,
                "top": [list(c) for c in d.top],
                "bottom": [list(c) for c in d.bottom],
            }
            for d in dirs
        ],
    }


def grid_csv(tokens: pd.DataFrame, values: pd.DataFrame) -> str:
    """The shown grid as CSV: each direction's token column followed by its values."""
    cols: dict[str, Any] = {}
    for c in tokens.columns:
        cols[c] = tokens[c]
        cols[f"{c} value"] = values[c]
    return pd.DataFrame(cols, index=tokens.index).to_csv()


def grid_json(dirs: list[Direction], meta: dict[str, Any] | None = None) -> str:
    """:func:`grid_records` as a JSON string."""
    return json.dumps(grid_records(dirs, meta), ensure_ascii=False, indent=1)


def method_label(method: str, kind: str, layer: int) -> str:
    """The grid's heading for a decomposition beyond the SVD, e.g. ``L2 MLP out · NMF``
    (``ov`` is the layer's stacked heads)."""
    from core.decompose import METHOD_NAMES

    what = f"L{layer} OV heads (stacked)" if kind == "ov" else component_label(kind, layer, None)
    return f"{what} · {METHOD_NAMES[method]}"


def method_caption(method: str, built: Any) -> str:
    """One line on a build: components, error, and what the fit saw."""
    err = "token-image FVU" if method == "nmf" else "FVU"
    return (
        f"{built.n} components; {err} {built.fvu:.3f} "
        f"(fraction of squared norm unexplained); {built.note}."
    )


def share_headers(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``σ=`` in its column names read as ``share=`` (a method's
    components carry their share of squared norm where SVD directions carry σ)."""
    return frame.rename(columns=lambda c: str(c).replace("σ=", "share="))
