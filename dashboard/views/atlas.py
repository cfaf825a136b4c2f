"""Atlas page: one row per component with its first directions' top tokens."""

import streamlit as st
from core.settings import KIND_NAMES
from dashboard import components, loaders, state
from dashboard.builders import atlas

sel, a = components.setup()

have = [k for k in atlas.ATLAS_KINDS + ("qk", "embed") if k in a.svd.kinds]
c1, c2, c3 = st.columns([3, 3, 2])
kinds = c1.multiselect(
    "Matrices",
    have,
    default=[k for k in atlas.ATLAS_KINDS if k in have],
    format_func=KIND_NAMES.__getitem__,
    key="atlas.kinds",
)
text = c2.text_input("Filter by token", key="atlas.filter", placeholder="e.g. fire")
sort = c3.selectbox(
    "Sort by", list(atlas.SORTS), format_func=atlas.SORTS.__getitem__, key="atlas.sort"
)

df = loaders.cached_table("atlas", sel, atlas.atlas_frame, tuple(k for k in have if k in kinds))
shown = atlas.atlas_table(df, text, sort)
st.caption(
    f"{len(shown)} of {len(df)} components. Click a row to open it in the cluster grid; "
    "click a column header to sort. " + atlas.EFFECTIVE_RANK_HELP
)
event = st.dataframe(
    shown,
    hide_index=True,
    width="stretch",
    height=min(36 * (len(shown) + 1) + 3, 700),
    on_select="rerun",
    selection_mode="single-row",
    key="atlas.table",
    column_config={
        "kind": None,
        "sigma_max": st.column_config.NumberColumn("largest σ", format="%.4g"),
        "effective_rank": st.column_config.NumberColumn(
            "effective rank", format="%.2f", help=atlas.EFFECTIVE_RANK_HELP
        ),
        "rank": st.column_config.NumberColumn("rank"),
    },
)
rows = event.selection.rows if event is not None else []
if rows and rows[0] < len(shown):
    state.open_component(*atlas.row_component(shown.iloc[rows[0]]))
