"""Semantic search page: find the singular directions closest to a query."""

import streamlit as st
from core.errors import CoreError
from core.search import default_kinds
from core.search.embed import METHODS
from core.search.null import ALPHA
from core.settings import KIND_NAMES
from dashboard import components, loaders, state
from dashboard.builders import search as sb
from dashboard.markup import plain

sel, a = components.setup()
index = loaders.search_index(sel)

# The widgets start from the last query (kept across pages, reloads and shared links).
last = state.search_query()
kind_options = list(index.kinds)
state.seed(
    {
        "search.query": last.query,
        "search.threshold": last.threshold,
        "search.top": last.top,
        "search.kinds": [k for k in (last.kinds or default_kinds(index)) if k in kind_options],
        "search.method": last.method,
    }
)
query = st.text_input(
    "Query",
    key="search.query",
    placeholder="comma-separated concepts, e.g. fire, flames",
    help="Concepts are separated by commas, colons or semicolons. Each is looked up with "
    "and without a leading space; a word that is several tokens is matched by all of "
    "them; a concept that is neither a token nor an English word is refused.",
)
c1, c2, c3, c4 = st.columns([2, 1, 3, 3])
threshold = c1.slider(
    "Min |cosine|",
    0.0,
    1.0,
    step=0.01,
    key="search.threshold",
    help="An optional pre-filter on the cosine of the method's query vector (for the "
    "token-space match: the ridge vector's, not the post's pinv). 0: none; significance "
    "against random queries decides what matches.",
)
top = int(c2.number_input("Top N", 1, 1000, key="search.top"))
kinds = c3.multiselect(
    "Matrices", kind_options, format_func=lambda k: KIND_NAMES.get(k, k), key="search.kinds"
)
method = c4.selectbox(
    "Query embedding",
    list(METHODS),
    format_func=lambda m: sb.METHOD_NAMES.get(m, m),
    key="search.method",
)
spec = state.SearchQuery(
    query=query,
    threshold=float(threshold),
    top=top,
    kinds=None if set(kinds) == set(default_kinds(index)) else tuple(kinds),
    method=method,
)

if not query.strip():
    state.record_search(None)
    st.info(
        "Type a query: the page lists the singular directions whose cosine with it is "
        f"at least the threshold, over {len(index):,} directions of this model."
    )
    st.stop()

try:
    view = sb.search_view(index, query, method, threshold, top, kinds)
except CoreError as exc:
    st.error(plain(exc))
    st.stop()

state.record_search(state.LastSearch(sel.model, sel.processing, spec))
res = view.result
st.caption(f"Query tokens: {plain(res.query.describe())}")
with st.expander("How each concept was tokenised"):
    st.dataframe(sb.query_tokens_frame(res), hide_index=True, key="search.tokens")

COLUMNS = {
    "kind": None,
    "end": None,
    "sigma": st.column_config.NumberColumn("σ", format="%.4g", width="small"),
    "cosine": st.column_config.NumberColumn("cosine", format="%+.3f"),
    "score": st.column_config.NumberColumn(
        "score",
        format="%.3f",
        help="What rows are ranked by: |cosine|, or for the token-space match the mean "
        "log-probability that each concept is among the direction's top tokens (0 is a "
        "perfect match).",
    ),
    "p": st.column_config.NumberColumn(
        "p",
        format="%.3f",
        help="Share of random queries with as many words whose best hit anywhere scores "
        "at least this (add-one; the smallest possible is 1/(draws+1)).",
    ),
    "z": st.column_config.NumberColumn(
        "z", format="%.1f", help="The score in standard deviations of those random bests."
    ),
    "significant": st.column_config.CheckboxColumn(
        "significant", help=f"p ≤ {ALPHA:g}: better than random queries of the same shape."
    ),
    "index": st.column_config.NumberColumn("direction"),
}


def hits_table(df, key: str) -> None:
    """The hits as a table whose row click opens the hit on the grid."""
    event = st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=key,
        column_config=COLUMNS,
    )
    rows = event.selection.rows if event is not None else []
    if rows and rows[0] < len(df):
        row = df.iloc[rows[0]]
        state.open_component(*sb.row_direction(row), end=sb.row_end(row))


n_hits = len(view.table)
st.subheader(f"{n_hits} significant matches of {res.n_searched:,} directions")
if res.null is not None:
    n_words = len(res.query.concepts)
    st.caption(
        f"Each hit's score is compared with the best hit of {len(res.null.best)} random "
        f"queries of {n_words} word{'s' if n_words > 1 else ''} (whole-word tokens of this "
        f"model{sb.null_words(res.null)}): significant when p ≤ {ALPHA:g}."
    )
if not n_hits and view.nothing_matches:
    st.warning(sb.no_match_message(view))
elif not n_hits:
    st.info("No direction reaches the threshold; lower it or try other words.")
show_all = st.toggle(
    f"Show non-significant hits ({len(view.weak)})",
    key="search.show_all",
    disabled=view.weak.empty,
)
if show_all and not view.weak.empty:
    hits_table(view.every_hit, "search.table")
elif n_hits:
    hits_table(view.table, "search.table")
if n_hits or (show_all and not view.weak.empty):
    st.caption(
        "Click a row to open that head or MLP on the cluster grid with the direction "
        "shown first and highlighted, on its matching end: an antipodal match (the query "
        "matches the bottom end) opens the negative end."
    )

for name, frame, build in (
    ("heads", view.heads, sb.head_heatmap),
    ("mlps", view.mlps, sb.mlp_heatmap),
):
    if len(frame):
        chart_event = st.altair_chart(
            build(frame, threshold), key=f"search.{name}", on_select="rerun"
        )
        picked = sb.picked_cell(chart_event["selection"] if chart_event else None)
        if picked is not None:
            kind, layer, head, direction, end = picked
            state.open_component(kind, layer, head, direction, end=end)
if len(view.heads) or len(view.mlps):
    st.caption("Click a cell to open that component on the grid at its best direction.")
