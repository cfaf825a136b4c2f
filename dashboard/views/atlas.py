"""Atlas page: one row per component with its first directions' top tokens."""

import streamlit as st
from core.decompose import METHOD_MATRICES, METHOD_NAMES
from core.settings import KIND_NAMES
from dashboard import components, loaders, state
from dashboard.builders import atlas

sel, a = components.setup()

c0, c1, c2, c3 = st.columns([2, 3, 3, 2])
method = components.method_selector("atlas", c0)
if method == "svd":
    have = [k for k in atlas.ATLAS_KINDS + ("qk", "embed") if k in a.svd.kinds]
    default = [k for k in atlas.ATLAS_KINDS if k in have]
else:
    have = list(METHOD_MATRICES[method])
    default = have
kinds = c1.multiselect(
    "Matrices",
    have,
    default=default,
    format_func=KIND_NAMES.__getitem__,
    key="atlas.kinds" if method == "svd" else f"atlas.kinds.{method}",
)
text = c2.text_input("Filter by token", key="atlas.filter", placeholder="e.g. fire")
sort = c3.selectbox(
    "Sort by", list(atlas.SORTS), format_func=atlas.SORTS.__getitem__, key="atlas.sort"
)

chosen = tuple(k for k in have if k in kinds)
if method == "svd":
    df = loaders.cached_table("atlas", sel, atlas.atlas_frame, chosen)
else:
    if st.button(f"Build {METHOD_NAMES[method]} for every layer shown", key="atlas.build"):
        for kind in chosen:
            for layer in range(1 if kind == "embed" else a.meta.n_layers):
                if loaders.ensure_method(a, method, kind, layer) is None:
                    break
    # Read from the cache parts each run: builds made on the grid show up at once.
    df = atlas.method_atlas_frame(a, method, chosen)
    if df.empty:
        st.info(
            f"No {METHOD_NAMES[method]} decomposition is built yet for these matrices: "
            "build them with the button above, or open one on the cluster grid."
        )
        st.stop()
shown = atlas.atlas_table(df, text, sort)
st.caption(
    f"{len(shown)} of {len(df)} components. Click a row to open it in the cluster grid; "
    "click a column header to sort. "
    + (
        atlas.EFFECTIVE_RANK_HELP
        if method == "svd"
        else "For this method 'largest σ' is the strongest component's share of squared norm."
    )
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
    kind, layer, head = atlas.row_component(shown.iloc[rows[0]])
    if method != "svd" and kind == "ov":
        head = 0  # the grid shows the layer's stacked heads whatever the head
    state.open_component(kind, layer, head)
