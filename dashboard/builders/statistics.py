"""Label statistics: stored verdicts as a table, interpretable fractions, and their charts.

Each direction has two ends, labelled separately (:mod:`core.label.store`); fractions
are per end and every chart shows the two ends in separate rows, since a labeller can
tell the weights from the control on one end and not on the other.

Every function takes plain data (label records or the frame built from them) and returns
a ``pd.DataFrame`` or an ``alt.Chart``; nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import altair as alt
import pandas as pd
from core.label.store import ENDS, LabelRecord, LabelStore, labels_path, reading
from core.model.weights import ModelMeta
from core.settings import BLOCK_NAMES, Settings

#: The blocks (display names of the matrix kinds, ``core.settings.BLOCK_NAMES``) in order.
BLOCK_ORDER = list(BLOCK_NAMES.values())
SOURCES = ("weights", "random control")
COLUMNS = ["model", "weights_hash", "processing", "projection", "matrix", "block", "layer",
           "head", "index", "end", "control", "source", "labeller", "interpretable", "label",
           "score", "tokens", "timestamp"]  # fmt: skip
#: The facet of a chart's two ends: one row each, top end first.
END_ROW = alt.Row(
    "end:N", sort=list(ENDS), title=None, header=alt.Header(labelExpr="datum.value + ' end'")
)


def labels_frame(records: Sequence[LabelRecord]) -> pd.DataFrame:
    """One row per stored verdict.

    Returns:
        columns :data:`COLUMNS`: the record's fields (``end``: ``top`` or ``bottom``) plus
        ``block`` (display name of the matrix) and ``source`` (``weights`` or ``random control``); ``head`` is a
        nullable integer, ``interpretable`` a nullable boolean, ``timestamp`` a datetime.
    """
    rows = [
        {
            "model": r.model,
            "weights_hash": r.weights_hash,
            "processing": r.processing,
            "projection": r.projection,
            "matrix": r.matrix,
            "block": BLOCK_NAMES.get(r.matrix, r.matrix),
            "layer": r.layer,
            "head": r.head,
            "index": r.index,
            "end": r.end,
            "control": r.control,
            "source": SOURCES[int(r.control)],
            "labeller": r.labeller,
            "interpretable": r.interpretable,
            "label": r.label,
            "score": r.score,
            "tokens": r.tokens,
            "timestamp": r.timestamp,
        }
        for r in records
    ]
    df = pd.DataFrame(rows, columns=COLUMNS)
    df["head"] = df["head"].astype("Int64")
    df["interpretable"] = df["interpretable"].astype("boolean")
    df["score"] = df["score"].astype("Float64")
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s")
    return df


def read_labels(cache_dir: Path) -> pd.DataFrame:
    """:func:`labels_frame` of every record in ``<cache_dir>/labels.sqlite`` (empty if none)."""
    if not labels_path(cache_dir).exists():
        return labels_frame([])
    with LabelStore.in_cache(cache_dir) as store:
        return labels_frame(store.query())


def this_reading(df: pd.DataFrame, meta: ModelMeta, settings: Settings) -> pd.DataFrame:
    """The rows of :func:`labels_frame` made on ``meta``'s weights under ``settings``'s
    reading (processing and projection: the directions and ends the page shows).
    """
    read = reading(settings)
    mine = _this_model(df, meta)
    keep = (mine["processing"] == read["processing"]) & (mine["projection"] == read["projection"])
    return mine[keep]


def _this_model(df: pd.DataFrame, meta: ModelMeta) -> pd.DataFrame:
    return df[(df["model"] == meta.name) & (df["weights_hash"] == meta.weights_hash)]


def empty_note(df: pd.DataFrame, meta: ModelMeta, settings: Settings) -> str:
    """What to say when :func:`this_reading` is empty: where this model's labels are, if
    any were made under another reading.
    """
    same = _this_model(df, meta)
    if same.empty:
        return "No labels for this model yet."
    others = same.groupby(["processing", "projection"]).size().sort_values(ascending=False)
    where = "; ".join(f"{n} under {proc} processing, {proj} projection"
                      for (proc, proj), n in others.items())  # fmt: skip
    hints = []
    procs = sorted({p for p, q in others.index if q == settings.projection} - {settings.processing})
    if procs:
        hints.append(f"choose {' or '.join(procs)} processing in the sidebar to see them")
    projs = sorted({q for _, q in others.index} - {settings.projection})
    if projs:
        hints.append(
            f"the dashboard reads the {settings.projection} projection, and "
            f"`python -m core label-stats --projection {projs[0]}` reads the "
            f"{' and '.join(projs)} ones"
        )
    return (
        f"No labels of this model under {settings.processing} processing and "
        f"{settings.projection} projection. It has labels made under other readings "
        f"({where}): {'; '.join(hints)}."
    )


def fractions(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Share of interpretable directions per group, undecided rows left out.

    Returns:
        columns ``*by``, ``labeller``, ``source``, ``fraction`` (0..1), ``n`` (decided
        directions), ``interpretable`` (count); one row per non-empty group.
    """
    keys = [*by, "labeller", "source"]
    decided = df[df["interpretable"].notna()]
    if decided.empty:
        return pd.DataFrame(columns=[*keys, "fraction", "n", "interpretable"])
    g = decided.assign(yes=decided["interpretable"].astype(int)).groupby(keys, observed=True)
    out = g["yes"].agg(["mean", "size", "sum"]).reset_index()
    out = out.rename(columns={"mean": "fraction", "size": "n", "sum": "interpretable"})
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def _bars(data: pd.DataFrame, x: str, x_title: str, sort: list[str] | None) -> alt.Chart:
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X(f"{x}:N", title=x_title, sort=sort),
            xOffset=alt.XOffset("source:N", sort=list(SOURCES)),
            y=alt.Y(
                "fraction:Q",
                title="interpretable",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),  # fmt: skip
            color=alt.Color(
                "source:N",
                title=None,
                sort=list(SOURCES),
                scale=alt.Scale(range=["#4c78a8", "#bab0ac"]),
            ),  # fmt: skip
            tooltip=[
                x,
                "labeller",
                "source",
                alt.Tooltip("fraction:Q", format=".1%"),
                "n",
                "interpretable",
            ],  # fmt: skip
        )
        .properties(width=alt.Step(28), height=220)
    )


def block_chart(df: pd.DataFrame) -> alt.FacetChart:
    """Fraction interpretable per block (OV heads, MLP in, MLP out, ...), weights beside
    their random control, one panel per labeller and end."""
    data = fractions(df, ["block", "end"])
    return _bars(data, "block", "block", BLOCK_ORDER).facet(
        column=alt.Column("labeller:N", title="labeller"), row=END_ROW
    )


def model_chart(df: pd.DataFrame) -> alt.FacetChart:
    """Fraction interpretable per model, weights beside control, one panel per labeller
    and end."""
    data = fractions(df, ["model", "end"])
    return _bars(data, "model", "model", None).facet(
        column=alt.Column("labeller:N", title="labeller"), row=END_ROW
    )


def runs(data: pd.DataFrame, x: str, by: Sequence[str]) -> pd.DataFrame:
    """``data`` with a ``run`` column: within each group of ``by``, rows whose ``x`` values
    are consecutive integers share a run. Lines are drawn per run, so they never join
    two values across one that has no labels (a lone value is a point)."""
    if data.empty:
        return data.assign(run=pd.Series(dtype=str))
    out = data.sort_values([*by, x], kind="stable").copy()
    step = out.groupby(list(by), observed=True)[x].diff().ne(1)
    number = step.groupby([out[c] for c in by], observed=True).cumsum()
    out["run"] = out[list(by)].astype(str).agg("|".join, axis=1) + "|" + number.astype(str)
    return out.reset_index(drop=True)


def _lines(data: pd.DataFrame, x: str, x_title: str) -> alt.Chart:
    return (
        alt.Chart(data)
        .mark_line(point=True)
        .encode(
            x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(
                "fraction:Q",
                title="interpretable",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),  # fmt: skip
            color=alt.Color("labeller:N"),
            strokeDash=alt.StrokeDash("source:N", sort=list(SOURCES), title=None),
            detail="run:N",
            tooltip=[
                "block",
                x,
                "labeller",
                "source",
                alt.Tooltip("fraction:Q", format=".1%"),
                "n",
            ],  # fmt: skip
        )
        .properties(width=240, height=180)
    )


def index_chart(df: pd.DataFrame) -> alt.FacetChart:
    """Fraction interpretable per singular-vector index (0 = largest singular value), per
    block and end; solid lines for the weights, dashed for the control, one colour per
    labeller. Indices without labels break the lines (:func:`runs`)."""
    data = runs(fractions(df, ["block", "end", "index"]), "index",
                ["block", "end", "labeller", "source"])  # fmt: skip
    return _lines(data, "index", "singular vector index").facet(
        column=alt.Column("block:N", sort=BLOCK_ORDER, title=None), row=END_ROW
    )


def layer_chart(df: pd.DataFrame) -> alt.FacetChart:
    """Fraction interpretable per layer, per block and end (the per-layer breakdown of
    :func:`block_chart`); lines as in :func:`index_chart`."""
    data = runs(fractions(df, ["block", "end", "layer"]), "layer",
                ["block", "end", "labeller", "source"])  # fmt: skip
    return _lines(data, "layer", "layer").facet(
        column=alt.Column("block:N", sort=BLOCK_ORDER, title=None), row=END_ROW
    )


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Fractions per model, block, end and labeller, weights and control side by side.

    Returns:
        columns ``model``, ``block``, ``end``, ``labeller``, ``weights`` and ``random
        control`` (fractions, NaN when missing), ``n weights``, ``n control``; top ends
        before bottom ones.
    """
    keys = ["model", "block", "end", "labeller"]
    f = fractions(df, ["model", "block", "end"])
    if f.empty:
        return pd.DataFrame(columns=[*keys, *SOURCES, "n weights", "n control"])
    f["end"] = pd.Categorical(f["end"], categories=list(ENDS))
    wide = f.pivot_table(index=keys, columns="source", values=["fraction", "n"],
                         observed=True)  # fmt: skip
    out = pd.DataFrame(index=wide.index)
    for s in SOURCES:
        out[s] = wide["fraction"][s] if s in wide["fraction"] else float("nan")
    out["n weights"] = wide["n"].get("weights", pd.Series(0, index=wide.index)).fillna(0)
    out["n control"] = wide["n"].get("random control", pd.Series(0, index=wide.index)).fillna(0)
    out[["n weights", "n control"]] = out[["n weights", "n control"]].astype(int)
    out = out.reset_index()
    out["end"] = out["end"].astype(str)
    return out


def search_labels(
    df: pd.DataFrame,
    text: str = "",
    labeller: str | None = None,
    interpretable: bool | None = None,
    include_control: bool = False,
) -> pd.DataFrame:
    """Rows whose label or tokens contain ``text`` (case-insensitive), optionally of one
    labeller and verdict; newest first."""
    out = df
    if not include_control:
        out = out[~out["control"].astype(bool)]
    if labeller:
        out = out[out["labeller"] == labeller]
    if interpretable is not None:
        out = out[out["interpretable"].fillna(not interpretable) == interpretable]
    if text.strip():
        t = text.strip().lower()
        hit = out["label"].str.lower().str.contains(t, regex=False) | out[
            "tokens"
        ].str.lower().str.contains(t, regex=False)
        out = out[hit]
    return out.sort_values("timestamp", ascending=False, kind="stable").reset_index(drop=True)


def csv_text(cache_dir: Path) -> str:
    """Every stored label as CSV (just the header when there are none)."""
    if not labels_path(cache_dir).exists():
        return ",".join(f.name for f in fields(LabelRecord)) + "\n"
    with LabelStore.in_cache(cache_dir) as store:
        return store.export_csv()
