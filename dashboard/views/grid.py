"""Cluster-grid page: the post's table of top tokens per singular direction."""

import streamlit as st
from core.errors import CoreError
from dashboard import components, loaders
from dashboard.builders import grid
from dashboard.labels_widget import render_label_controls
from dashboard.markup import plain

sel, a = components.setup()

rank = a.svd.kinds[sel.kind].decomposition.rank
c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 3, 2])
end = c1.radio(
    "Ends", list(grid.ENDS), format_func=lambda e: grid.ENDS[e], horizontal=True, key="grid.end"
)
n_default = min(10, rank)
if sel.direction is not None:
    n_default = min(rank, max(n_default, sel.direction + 1))
n = c2.slider("Directions", 1, rank, n_default, key="grid.n") if rank > 1 else 1
k = c3.slider("Tokens per direction (k)", 3, 100, 15, key="grid.k")
filters = c4.multiselect(
    "Token filters",
    ["alpha", "ascii"],
    key="grid.filters",
    help="alpha: alphabetic tokens only (a leading space allowed); ascii: printable ASCII.",
)
control = c5.toggle(
    "Control",
    key="grid.control",
    help="The same view of a random Gaussian matrix of this shape (one per layer).",
)

components.step_buttons(sel, a, key="grid")
control = control and loaders.ensure_controls(a)

try:
    dirs = loaders.component_directions(sel, n=n, k=k, filters=tuple(filters), control=control)
except CoreError as exc:
    st.error(plain(exc))
    st.stop()

what = f"random control for {sel.label()}" if control else sel.label()
st.subheader(what)
if sel.direction is not None and not control:
    st.info(f"Highlighting direction #{sel.direction} (outlined in orange).")
tokens, values = grid.grid_frames(dirs, end)
st.dataframe(
    grid.style_grid(tokens, values, None if control else sel.direction, dirs),
    height=min(36 * (len(tokens) + 1) + 3, 1200),
    key="grid.table",
)
st.caption(
    "Columns: singular directions by singular value (σ in the header; ≈ near-degenerate). "
    "Cells: tokens whose unembedding has the largest (blue) or most negative (red) dot "
    "product with the direction; colour strength is the projection, on one scale per table."
)

stem = sel.label().replace(" ", "_") + ("_control" if control else "")
meta = {
    "model": sel.model,
    "processing": sel.processing,
    "kind": sel.kind,
    "layer": sel.layer,
    "head": sel.component_head,
    "control": control,
    "filters": list(filters),
}
d1, d2, _ = st.columns([1, 1, 4])
d1.download_button(
    "Download CSV", grid.grid_csv(tokens, values), f"{stem}.csv", "text/csv", key="grid.csv"
)
d2.download_button(
    "Download JSON",
    grid.grid_json(dirs, meta),
    f"{stem}.json",
    "application/json",
    key="grid.json",
)

if not control:
    try:
        labelled = loaders.component_directions(sel, n=n, k=k)  # unfiltered: tokens are stored
        render_label_controls(a, labelled, sel.kind, sel.layer, sel.head, key="grid.labels")
    except CoreError as exc:
        st.error(plain(exc))
