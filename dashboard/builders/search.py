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
from core.search.engine import (
    SearchIndex,
    SearchResult,
    embed_query,
    not_significant,
    search,
    similarities,
)
from core.search.null import Null
from core.settings import HEAD_KINDS, KIND_NAMES

METHOD_NAMES: dict[str, str] = {
    "token": "token-space match (best)",
    "ridge": "ridge (centred, regularised pinv)",
    "pinv": "pinv(W_U) (the post's)",
    "embed": "W_E (embedding rows)",
}
TOKENS_SHOWN = 10
#: The selection parameter of the heatmaps: a click picks a cell (its component).
PICK = "pick_cell"
_PICK_FIELDS = ["kind", "layer", "head", "index", "cosine"]


@dataclass(frozen=True)
class SearchView:
    """Everything the page shows for one query.

    ``table`` holds the significant hits (their score beats random queries of the same
    shape, ``p <= ALPHA``), ``weak`` the other hits that reach the threshold: not
    significant, hidden unless the page's toggle shows them.
    """

    result: SearchResult
    table: pd.DataFrame
    heads: pd.DataFrame
    mlps: pd.DataFrame
    weak: pd.DataFrame

    @property
    def nothing_matches(self) -> bool:
        """Hits reach the threshold, but none is significant."""
        return self.table.empty and not self.weak.empty

    @property
    def every_hit(self) -> pd.DataFrame:
        """Significant and non-significant hits together, best first."""
        if self.weak.empty:
            return self.table
        if self.table.empty:
            return self.weak
        return pd.concat([self.table, self.weak]).sort_values("rank").reset_index(drop=True)


def query_tokens_frame(result: SearchResult) -> pd.DataFrame:
    """How each concept of the query was tokenised: one row per concept with columns
    ``concept``, ``spelled as`` (each spelling's tokens, pieces joined by ``+``; a
    spelling of several tokens is matched by all of them) and ``tokens`` (how many the
    longest spelling has)."""
    q = result.query
    rows = []
    for i, (c, toks) in enumerate(zip(q.concepts, q.concept_tokens)):
        sp = q.spellings[i] if i < len(q.spellings) else tuple((t,) for t in toks)
        rows.append(
            {
                "concept": c,
                "spelled as": ", ".join("+".join(repr(p) for p in s) for s in sp),
                "tokens": max((len(s) for s in sp), default=0),
            }
        )
    return pd.DataFrame(rows, columns=["concept", "spelled as", "tokens"])


def results_frame(result: SearchResult) -> pd.DataFrame:
    """One row per hit, best first.

    Columns: ``rank``, ``matrix`` (display name), ``layer``, ``head`` (nullable),
    ``index``, ``sigma``, ``cosine`` (signed), ``score`` (what the rows are ranked by),
    ``p`` and ``z`` (the score against random queries of the same shape),
    ``significant`` (``p <= ALPHA``), ``match`` (``positive``/``antipodal``), ``end`` (``top``/``bottom``: the matching one),
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
            "p": h.p,
            "z": h.z,
            "significant": bool(h.significant) if h.significant is not None else True,
            "match": h.sign,
            "end": h.end,
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
            "p",
            "z",
            "significant",
            "match",
            "end",
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
    table = results_frame(result)
    strong = pd.Series([h.significant is not False for h in result.hits], dtype=bool)
    weak = table[~strong.to_numpy()].reset_index(drop=True) if len(table) else table
    table = table[strong.to_numpy()].reset_index(drop=True) if len(table) else table
    return SearchView(result, table, heads, mlps, weak)


def null_words(null: Null) -> str:
    """How the null's random words were drawn, as a clause for the captions."""
    if null.bins is None:
        return ""
    return ", each as frequent in English as the query's word it stands for"


def no_match_message(view: SearchView) -> str:
    """The sentence shown when hits reach the threshold but none is significant."""
    sentence = not_significant(view.result)
    assert sentence is not None, "no_match_message is for a view where nothing_matches"
    return f"{sentence} Switch on “Show non-significant hits” to see them."


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

    Cells at or above a positive ``threshold`` in ``|cosine|`` are outlined.
    """
    df = heads.assign(
        head=heads["head"].astype(float), hit=(heads["abs_cosine"] >= threshold) & (threshold > 0)
    )
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
    pick = alt.selection_point(name=PICK, fields=_PICK_FIELDS, on="click")
    rect = (
        base.mark_rect(cursor="pointer")
        .encode(
            color=_color(_domain(df)),
            stroke=alt.condition(alt.datum.hit, alt.value("black"), alt.value("transparent")),
            strokeWidth=alt.condition(alt.datum.hit, alt.value(1.5), alt.value(0)),
        )
        .add_params(pick)
    )
    return (
        rect.properties(width=alt.Step(22), height=alt.Step(18))
        .facet(column=alt.Column("matrix:N", title=None))
        .properties(title="Best cosine per head (blue: top end, red: antipodal)")
    )


def mlp_heatmap(mlps: pd.DataFrame, threshold: float = 0.0) -> alt.Chart:
    """Layer x matrix-kind heatmap of each MLP (and embedding) matrix's best cosine."""
    df = mlps.assign(hit=(mlps["abs_cosine"] >= threshold) & (threshold > 0))
    order = [KIND_NAMES[k] for k in KIND_NAMES if k not in HEAD_KINDS]
    pick = alt.selection_point(name=PICK, fields=_PICK_FIELDS, on="click")
    return (
        alt.Chart(df)
        .mark_rect(cursor="pointer")
        .add_params(pick)
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


def row_end(row: pd.Series) -> str:
    """The grid end to open a :func:`results_frame` row on: its matching end."""
    return str(row.get("end", "top"))


def picked_cell(
    selection: dict[str, list[dict[str, object]]] | None,
) -> tuple[str, int, int | None, int, str] | None:
    """The ``(kind, layer, head, index, end)`` of a heatmap cell a click picked (the
    ``selection`` of ``st.altair_chart(..., on_select="rerun")``), or ``None``."""
    rows = (selection or {}).get(PICK) or []
    if not rows or not isinstance(rows[0], dict) or "kind" not in rows[0]:
        return None
    r = rows[0]
    head = r.get("head")
    head_i = None if head is None or pd.isna(head) else int(float(head))  # type: ignore[arg-type]
    end = "bottom" if float(r.get("cosine") or 0.0) < 0 else "top"  # type: ignore[arg-type]
    return str(r["kind"]), int(r["layer"]), head_i, int(r["index"]), end  # type: ignore[call-overload]
