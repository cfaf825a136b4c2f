"""Semantic search views: the ranked results table and the per-component heatmaps.

Pure functions of a :class:`~core.search.engine.SearchIndex` and a query; no Streamlit. Colour
encodes the *signed* cosine on a diverging scale (blue: the query matches the
direction's top end; red: antipodal, it matches the bottom end).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd
import torch
from core.search.engine import SearchIndex, SearchResult, embed_query, search, similarities
from core.settings import HEAD_KINDS, KIND_NAMES

METHOD_NAMES: dict[str, str] = {
    "token": "token-space match (best)",
    "ridge": "ridge (centred, regularised pinv)",
    "pinv": "pinv(W_U) (the post's)",
    "embed": "W_E (embedding rows)",
}
TOKENS_SHOWN = 10


@dataclass(frozen=True)
class SearchView:
    """Everything the page shows for one query."""

    result: SearchResult
    table: pd.DataFrame
    heads: pd.DataFrame
    mlps: pd.DataFrame


def results_frame(result: SearchResult) -> pd.DataFrame:
    """One row per hit, best first.

    Columns: ``rank``, ``matrix`` (display name), ``layer``, ``head`` (nullable),
    ``index``, ``sigma``, ``cosine`` (signed), ``score`` (what the rows are ranked by),
    ``match`` (``positive``/``antipodal``),
    ``tokens`` (the matching end, strongest first; ``(bottom)`` marks an antipodal
    match), ``kind`` (the raw kind, for opening the component).
    """
    rows = [
        {
            "rank": i + 1,
            "matrix": KIND_NAMES.get(h.matrix, h.matrix),
            "layer": h.layer,
            "head": h.head,
            "index": h.index,
            "sigma": h.singular_value,
            "cosine": h.cosine,
            "score": h.score,
            "match": h.sign,
            "tokens": ("(bottom) " if h.end == "bottom" else "")
            + " ".join(d for _, d, _ in h.tokens[:TOKENS_SHOWN]),
            "kind": h.matrix,
        }
        for i, h in enumerate(result.hits)
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "rank",
            "matrix",
            "layer",
            "head",
            "index",
            "sigma",
            "cosine",
            "score",
            "match",
            "tokens",
            "kind",
        ],
    )
    df["head"] = df["head"].astype("Int64")
    return df


def best_per_component(index: SearchIndex, q: torch.Tensor, kinds: Sequence[str]) -> pd.DataFrame:
    """For each component of ``kinds``, its direction with the largest ``|cosine|``.

    Columns: ``kind``, ``matrix``, ``layer``, ``head`` (nullable), ``index``, ``cosine``
    (signed), ``abs_cosine``.
    """
    frames = []
    for kind in kinds:
        if kind not in index.spans:
            continue
        sims, _ = similarities(index, q, [kind])
        d = index.results[kind].decomposition
        per = sims.reshape(len(d.components), d.rank)
        best = per.abs().argmax(dim=1)
        cos = per.gather(1, best[:, None])[:, 0]
        frames.append(
            pd.DataFrame(
                {
                    "kind": kind,
                    "matrix": KIND_NAMES.get(kind, kind),
                    "layer": [lay for lay, _ in d.components],
                    "head": pd.array(
                        [h if kind in HEAD_KINDS else None for _, h in d.components],
                        dtype="Int64",
                    ),
                    "index": best.tolist(),
                    "cosine": cos.tolist(),
                    "abs_cosine": cos.abs().tolist(),
                }
            )
        )
    cols = ["kind", "matrix", "layer", "head", "index", "cosine", "abs_cosine"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def search_view(
    index: SearchIndex,
    query: str,
    method: str,
    threshold: float,
    top: int,
    kinds: Sequence[str],
) -> SearchView:
    """Run the search and build every table the page shows.

    Raises:
        SpecError: bad query, method, kinds, threshold or top (one sentence).
    """
    result = search(index, query, method, threshold, top, kinds)
    q = embed_query(index, result.query, method)
    best = best_per_component(index, q, kinds)
    heads = best[best["kind"].isin(list(HEAD_KINDS))].reset_index(drop=True)
    mlps = best[~best["kind"].isin(list(HEAD_KINDS))].reset_index(drop=True)
    return SearchView(result, results_frame(result), heads, mlps)


def _color(domain: float) -> alt.Color:
    return alt.Color(
        "cosine:Q",
        title="cosine",
        scale=alt.Scale(scheme="redblue", domain=[-domain, domain], domainMid=0),
    )


def _domain(df: pd.DataFrame) -> float:
    m = float(df["abs_cosine"].max()) if len(df) else 1.0
    return max(m, 0.05)


def head_heatmap(heads: pd.DataFrame, threshold: float = 0.0) -> alt.Chart:
    """Layer x head heatmap of each head's best signed cosine (one panel per kind).

    Cells at or above ``threshold`` in ``|cosine|`` are outlined.
    """
    df = heads.assign(head=heads["head"].astype(float), hit=heads["abs_cosine"] >= threshold)
    tooltip = [
        alt.Tooltip("matrix:N"),
        alt.Tooltip("layer:O"),
        alt.Tooltip("head:O"),
        alt.Tooltip("index:Q", title="direction"),
        alt.Tooltip("cosine:Q", format="+.3f"),
    ]
    base = alt.Chart(df).encode(
        x=alt.X("head:O", title="head"),
        y=alt.Y("layer:O", title="layer"),
        tooltip=tooltip,
    )
    rect = base.mark_rect().encode(
        color=_color(_domain(df)),
        stroke=alt.condition(alt.datum.hit, alt.value("black"), alt.value("transparent")),
        strokeWidth=alt.condition(alt.datum.hit, alt.value(1.5), alt.value(0)),
    )
    return (
        rect.properties(width=alt.Step(22), height=alt.Step(18))
        .facet(column=alt.Column("matrix:N", title=None))
        .properties(title="Best cosine per head (blue: top end, red: antipodal)")
    )


def mlp_heatmap(mlps: pd.DataFrame, threshold: float = 0.0) -> alt.Chart:
    """Layer x matrix-kind heatmap of each MLP (and embedding) matrix's best cosine."""
    df = mlps.assign(hit=mlps["abs_cosine"] >= threshold)
    order = [KIND_NAMES[k] for k in KIND_NAMES if k not in HEAD_KINDS]
    return (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X("matrix:N", title=None, sort=order),
            y=alt.Y("layer:O", title="layer"),
            color=_color(_domain(df)),
            stroke=alt.condition(alt.datum.hit, alt.value("black"), alt.value("transparent")),
            strokeWidth=alt.condition(alt.datum.hit, alt.value(1.5), alt.value(0)),
            tooltip=[
                alt.Tooltip("matrix:N"),
                alt.Tooltip("layer:O"),
                alt.Tooltip("index:Q", title="direction"),
                alt.Tooltip("cosine:Q", format="+.3f"),
            ],
        )
        .properties(
            width=alt.Step(70),
            height=alt.Step(18),
            title="Best cosine per MLP matrix (blue: top end, red: antipodal)",
        )
    )


def row_direction(row: pd.Series) -> tuple[str, int, int | None, int]:
    """The ``(kind, layer, head, index)`` of a :func:`results_frame` row."""
    head = None if pd.isna(row["head"]) else int(row["head"])
    return str(row["kind"]), int(row["layer"]), head, int(row["index"])
