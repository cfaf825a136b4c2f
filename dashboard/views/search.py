"""Semantic search page: find the singular directions closest to a query."""

import streamlit as st
from core.errors import CoreError
from core.search import default_kinds
from core.search.embed import DEFAULT_METHOD, METHODS
from core.search.engine import DEFAULT_THRESHOLD, DEFAULT_TOP
from core.settings import KIND_NAMES
from dashboard import components, loaders, state
from dashboard.builders import search as sb
from dashboard.markup import plain

sel, a = components.setup()
index = loaders.search_index(sel)

query = st.text_input(
    "Query",
    key="search.query",
    placeholder="comma-separated concepts, e.g. fire, flames",
    help="Each concept is looked up with and without a leading space; a word that is "
    "several tokens is represented by its pieces.",
)
c1, c2, c3, c4 = st.columns([2, 1, 3, 3])
threshold = c1.slider(
    "Threshold |cosine|", 0.0, 1.0, DEFAULT_THRESHOLD, 0.01, key="search.threshold"
)
top = int(c2.number_input("Top N", 1, 1000, DEFAULT_TOP, key="search.top"))
kinds = c3.multiselect(
    "Matrices",
    list(index.kinds),
    default=list(default_kinds(index)),
    format_func=lambda k: KIND_NAMES.get(k, k),
    key="search.kinds",
)
method = c4.selectbox(
    "Query embedding",
    list(METHODS),
    index=list(METHODS).index(DEFAULT_METHOD),
    format_func=lambda m: sb.METHOD_NAMES.get(m, m),
    key="search.method",
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

state.record_search(state.LastSearch(sel.model, sel.processing, query, threshold, top))
res = view.result
st.caption(f"Query tokens: {plain(res.query.describe())}")
st.subheader(f"{len(res.hits)} matches of {res.n_searched:,} directions")
if res.hits:
    event = st.dataframe(
        view.table,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key="search.table",
        column_config={
            "kind": None,
            "sigma": st.column_config.NumberColumn("σ", format="%.4g"),
            "cosine": st.column_config.NumberColumn("cosine", format="%+.3f"),
            "score": st.column_config.NumberColumn(
                "score",
                format="%.3f",
                help="What rows are ranked by: |cosine|, or for the token-space match the "
                "mean log-probability that each concept is among the direction's top "
                "tokens (0 is a perfect match).",
            ),
            "index": st.column_config.NumberColumn("direction"),
        },
    )
    st.caption(
        "Click a row to open that head or MLP on the cluster grid with the direction "
        "highlighted. An antipodal match (negative cosine) matches the direction's "
        "bottom end, whose tokens are shown."
    )
    rows = event.selection.rows if event is not None else []
    if rows and rows[0] < len(view.table):
        state.open_component(*sb.row_direction(view.table.iloc[rows[0]]))
else:
    st.info("No direction reaches the threshold; lower it or try other words.")

if len(view.heads):
    st.altair_chart(sb.head_heatmap(view.heads, threshold), key="search.heads")
if len(view.mlps):
    st.altair_chart(sb.mlp_heatmap(view.mlps, threshold), key="search.mlps")
