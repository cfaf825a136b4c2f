"""The Prompt page's tables and charts: the logit lens heatmap and the active directions.

``compute_*`` take the analysis and the prompt's one forward pass (a
:class:`core.lens.PromptRun`, or its :class:`core.lens.PromptActivations`), which
:mod:`dashboard.loaders.prompt` runs once per prompt and shares; the rest turn their
frames into what the page draws. No Streamlit here.
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import pandas as pd
from core.analysis import Analysis
from core.lens import (
    PromptActivations,
    PromptRun,
    active_directions,
    logit_lens,
    row_names,
    target_token,
    with_tokens,
)
from core.settings import KIND_NAMES

from dashboard.builders.names import component_label

#: What the heatmap colours: the target's rank (log scale) or its probability.
SHOW = {"rank": "target rank", "prob": "target probability"}
#: The selection parameter of the heatmap: a click picks a cell (a position and row).
PICK = "cell"
#: The parameter holding the outlined ``(position, row)`` cell.
CHOSEN = "chosen_cell"
#: Cells get their top token written in them up to this many positions.
MAX_TEXT_POSITIONS = 32


def compute_lens(a: Analysis, run: PromptRun, target: str = "", k: int = 5) -> pd.DataFrame:
    """The logit lens of ``run`` as one row per (layer row, position).

    Columns: ``row`` (0 = embedding, ``l + 1`` = after block ``l``), ``layer`` (its
    name), ``position``, ``token`` (the input token there), ``label``
    (``"3 ␣fire"``, the x axis), ``target`` (the ranked token; '' where none),
    ``rank`` (1 = most probable; NA where no target), ``prob``, ``top1`` and ``top``
    (the ``k`` most probable tokens with their probabilities).

    Raises:
        CoreError: empty target (one sentence).
    """
    tid = None
    if target:
        assert a.model is not None
        tid = target_token(a.model.tokenizer, target, run.prompt)
    lens = logit_lens(run.capture, k=k, target=tid)
    display = a.tokens.display
    names = row_names(run.capture.n_layers)
    rows: list[dict[str, Any]] = []
    idx, prob = lens.top_idx.tolist(), lens.top_prob.tolist()
    ranks, tprob, tgt = lens.target_rank.tolist(), lens.target_prob.tolist(), lens.target.tolist()
    for r, name in enumerate(names):
        for p, tok in enumerate(run.tokens):
            has = tgt[p] >= 0
            rows.append(
                {
                    "row": r,
                    "layer": name,
                    "position": p,
                    "token": tok,
                    "label": f"{p} {tok}",
                    "target": display[tgt[p]] if has else "",
                    "rank": ranks[r][p] if has else pd.NA,
                    "prob": tprob[r][p] if has else float("nan"),
                    "top1": display[idx[r][p][0]],
                    "top": ", ".join(
                        f"{display[i]} {v:.2f}" for i, v in zip(idx[r][p], prob[r][p])
                    ),
                }
            )
    df = pd.DataFrame(rows)
    df["rank"] = df["rank"].astype("Int64")
    return df


def lens_heatmap(
    df: pd.DataFrame, show: str = "rank", chosen: tuple[int, int] | None = None
) -> alt.Chart | alt.LayerChart:
    """Layers (embedding at the bottom) x positions, coloured by the target's rank (log
    scale) or probability (up to the largest shown), bright where the target is likely;
    the top tokens in the tooltip, the top one written in the cell for short prompts. A
    click picks a cell (:data:`PICK`); the ``chosen`` ``(position, row)`` is outlined
    (:data:`CHOSEN`; :func:`with_chosen` moves it).
    """
    if show not in SHOW:
        raise ValueError(f"show must be one of {', '.join(SHOW)}, not {show!r}")
    data = df.assign(rank=df["rank"].astype("float"), has_target=df["rank"].notna())
    # Vega drops a mark whose colour field is null; cells without a target get a filler
    # value there and are drawn grey by the condition below (pickable and outlined).
    data["shade"] = (data["rank"] if show == "rank" else data["prob"]).fillna(1.0)
    labels = list(dict.fromkeys(data.sort_values("position")["label"]))
    layers = list(dict.fromkeys(data.sort_values("row", ascending=False)["layer"]))
    worst = 2.0
    if show == "rank":
        worst = max(float(data["rank"].max()) if data["rank"].notna().any() else 2.0, 2.0)
        color = alt.Color(
            "shade:Q",
            title="target rank",
            scale=alt.Scale(type="log", domain=[1, worst], scheme="viridis", reverse=True),
        )
    else:
        # Up to the largest probability shown: a weak model's targets stay far below 1.
        top = float(data["prob"].max()) if data["prob"].notna().any() else 1.0
        worst = max(top, 1e-6)
        color = alt.Color(
            "shade:Q",
            title="target probability",
            scale=alt.Scale(domain=[0, worst], scheme="viridis"),
        )
    pick = alt.selection_point(name=PICK, fields=["position", "row"], on="click")
    # The outlined cell is a parameter's value, not part of the marks: the page patches
    # it into a cached spec (with_chosen) instead of building the chart per cell.
    cell = alt.param(name=CHOSEN, value=_cell_value(chosen))
    base = alt.Chart(data).encode(
        x=alt.X("label:O", title="position", sort=labels, axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("layer:O", title="layer", sort=layers),
        tooltip=[
            alt.Tooltip("position:Q"),
            alt.Tooltip("token:N", title="input token"),
            alt.Tooltip("layer:N"),
            alt.Tooltip("target:N"),
            alt.Tooltip("rank:Q", title="target rank"),
            alt.Tooltip("prob:Q", title="target probability", format=".4f"),
            alt.Tooltip("top:N", title="top tokens"),
        ],
    )
    fill = alt.condition(alt.datum.has_target, color, alt.value("#e8eaf0"))
    rect = base.mark_rect(cursor="pointer").encode(color=fill).add_params(pick)
    on = f"datum.position == {CHOSEN}.position && datum.row == {CHOSEN}.row"
    rect = rect.encode(
        stroke=alt.condition(on, alt.value("red"), alt.value("transparent")),
        strokeWidth=alt.condition(on, alt.value(3), alt.value(0)),
    )
    chart: alt.Chart | alt.LayerChart = rect
    text_shown = data["position"].nunique() <= MAX_TEXT_POSITIONS
    if text_shown:
        # Both scales are bright where the target is likely: white text on the dark half.
        dark = (
            f"isValid(datum.rank) && log(datum.rank) > {math.log(worst) / 2!r}"
            if show == "rank"
            else f"isValid(datum.prob) && datum.prob < {worst / 2!r}"
        )
        text = base.mark_text(fontSize=10, limit=60).encode(
            text="top1:N",
            color=alt.condition(dark, alt.value("white"), alt.value("black")),
        )
        chart = rect + text
    return chart.add_params(cell).properties(
        width=alt.Step(max(46, min(90, 1200 // max(len(labels), 1)))),
        height=alt.Step(24),
        title=f"Logit lens: the {SHOW[show]} per layer and position "
        + ("(text: top token)" if text_shown else "(tooltip: top tokens)"),
    )


def _cell_value(chosen: tuple[int, int] | None) -> dict[str, int]:
    position, row = (-1, -1) if chosen is None else chosen
    return {"position": int(position), "row": int(row)}


def with_chosen(spec: dict[str, Any], chosen: tuple[int, int] | None) -> dict[str, Any]:
    """A copy of a :func:`lens_heatmap` spec (its Vega-Lite dict) with the ``chosen``
    ``(position, row)`` outlined instead (``None``: no cell)."""
    params = [
        {**p, "value": _cell_value(chosen)} if p.get("name") == CHOSEN else p
        for p in spec.get("params", [])
    ]
    return {**spec, "params": params}


def picked_cell(selection: dict[str, Any] | None) -> tuple[int, int] | None:
    """The ``(position, row)`` a heatmap click picked (the ``selection`` of
    ``st.vega_lite_chart(..., on_select="rerun")``), or ``None``."""
    rows = (selection or {}).get(PICK) or []
    if not rows or not isinstance(rows[0], dict) or "position" not in rows[0]:
        return None
    return int(rows[0]["position"]), int(rows[0]["row"])


def block_of_row(row: int) -> int:
    """The block whose directions a lens row shows: row ``l + 1`` is after block ``l``;
    the embedding's row shows block 0 (the first to read it)."""
    return max(row - 1, 0)


def compute_active(
    a: Analysis,
    acts: PromptActivations,
    layer: int,
    position: int,
    side: str,
    n: int = 10,
    k: int = 10,
    by: str = "activation",
) -> pd.DataFrame:
    """The ``n`` directions of ``layer``'s heads and MLP with the largest activation at
    ``position`` of a prompt (``acts``) on ``side``, ranked ``by``
    (:func:`core.lens.active_directions`), one row each.

    Columns: ``component`` (``L2 H1 OV``), ``kind``, ``matrix``, ``layer``, ``head``
    (NA for the MLP), ``index``, ``activation``, ``sigma``, ``end`` (the end it pushes
    toward), ``tokens`` (that end's ``k`` tokens).

    Raises:
        CoreError: bad layer, position or side (one sentence).
    """
    items = active_directions(a, acts, layer, position, side, n, by)
    rows = []
    for x, d in with_tokens(a, items, k=k):
        end = d.top if x.end == "top" else d.bottom
        rows.append(
            {
                "component": component_label(x.kind, x.layer, x.head),
                "kind": x.kind,
                "matrix": KIND_NAMES[x.kind],
                "layer": x.layer,
                "head": pd.NA if x.head is None else x.head,
                "index": x.index,
                "activation": x.value,
                "sigma": x.singular_value,
                "end": x.end,
                "tokens": " ".join(t for _, t, _ in end),
            }
        )
    cols = [
        "component",
        "kind",
        "matrix",
        "layer",
        "head",
        "index",
        "activation",
        "sigma",
        "end",
        "tokens",
    ]
    df = pd.DataFrame(rows, columns=cols)
    df["head"] = df["head"].astype("Int64")
    return df


def row_direction(row: pd.Series) -> tuple[str, int, int | None, int, str]:
    """The ``(kind, layer, head, index, end)`` of a :func:`compute_active` row (what
    ``state.open_component`` takes)."""
    head = None if pd.isna(row["head"]) else int(row["head"])
    return str(row["kind"]), int(row["layer"]), head, int(row["index"]), str(row["end"])
