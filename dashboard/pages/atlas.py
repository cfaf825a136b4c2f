"""Atlas page: one row per component with its first directions' top tokens."""

import _root  # noqa: F401  (repository root on sys.path; see dashboard/_root.py)
import streamlit as st

from dashboard import components, loaders, state
from dashboard.builders import atlas

st.title("Atlas")
sel, a = components.setup()

have = [k for k in atlas.ATLAS_KINDS + ("qk", "embed") if k in a.svd.kinds]
c1, c2, c3 = st.columns([3, 3, 2])
kinds = c1.multiselect(
    "Matrices",
    have,
    default=[k for k in atlas.ATLAS_KINDS if k in have],
    format_func=lambda k: atlas.KIND_NAMES[k],
    key="atlas.kinds",
)
text = c2.text_input("Filter by token", key="atlas.filter", placeholder="e.g. fire")
sort = c3.selectbox(
    "Sort by",
    ["layer", "effective_rank", "sigma_max"],
    format_func=lambda s: {
        "layer": "layer",
        "effective_rank": "effective rank",
        "sigma_max": "largest σ",
    }[s],
    key="atlas.sort",
)

df = loaders.cached_table("atlas", sel, atlas.atlas_frame, tuple(k for k in have if k in kinds))
shown = atlas.filter_atlas(df, text)
if not shown.empty and sort != "layer":
    # The frame comes layer-major already; other keys sort largest first.
    shown = shown.sort_values(sort, ascending=False, kind="stable")
# Heads as text so MLP rows show an empty cell rather than "None".
shown = shown.reset_index(drop=True)
if "head" in shown:
    shown["head"] = shown["head"].astype("string").fillna("")
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
    row = shown.iloc[rows[0]]
    head = int(row["head"]) if str(row["head"]).isdigit() else None
    state.open_component(str(row["kind"]), int(row["layer"]), head)
