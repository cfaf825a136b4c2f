"""Cluster-grid page: the post's table of top tokens per singular direction."""

import streamlit as st
from core.decompose import METHOD_MATRICES, METHOD_NAMES
from core.errors import CoreError
from core.settings import KIND_NAMES
from core.svd.project import TOKEN_FILTERS
from dashboard import components, loaders, state
from dashboard.builders import grid
from dashboard.labels_widget import render_label_controls
from dashboard.markup import plain

sel, a = components.setup()

view = state.grid_view()
# The widgets start from the typed view (the URL's, or what a search hit asked for).
state.seed(
    {
        "grid.end": view.end,
        "grid.n": view.n,  # clamped to the rank below
        "grid.k": view.k,
        "grid.filters": list(view.filters),
        "grid.control": view.control,
    }
)
method = components.method_selector("grid", st.columns([2, 6])[0])
if method != "svd":
    if sel.kind not in METHOD_MATRICES[method]:
        names = ", ".join(KIND_NAMES[k] for k in METHOD_MATRICES[method])
        st.info(f"{METHOD_NAMES[method]} reads {names}; pick one in the sidebar, or Method SVD.")
        # The options' widgets are not drawn on this run, and Streamlit would forget their
        # values: the typed view keeps them for the next run.
        for key in ("grid.end", "grid.n", "grid.k", "grid.filters", "grid.control"):
            st.session_state.pop(key, None)
        st.stop()
    built = loaders.ensure_method(a, method, sel.kind, sel.layer)
    if built is None:
        st.stop()
    rank = built.n
else:
    rank = a.svd.kinds[sel.kind].decomposition.rank
c1, c2, c3, c4, c5 = st.columns([3, 2, 2, 3, 2])
end = c1.radio(
    "Ends", list(grid.ENDS), format_func=lambda e: grid.ENDS[e], horizontal=True, key="grid.end"
)
if st.session_state["grid.n"] > rank:  # another matrix had more directions
    st.session_state["grid.n"] = rank
n = c2.slider("Directions", 1, rank, key="grid.n") if rank > 1 else 1
k = c3.slider("Tokens per direction (k)", 3, 100, key="grid.k")
filters = c4.multiselect(
    "Token filters",
    list(TOKEN_FILTERS),
    key="grid.filters",
    help="alpha: alphabetic tokens only (a leading space allowed); ascii: printable ASCII; "
    "trained: hides tokens detected from the weights as under-trained (rarely or never "
    "seen in training). "
    + (
        "This model's tokenizer lists no unused tokens to compare with, so trained keeps all."
        if a.tokens.trained is None
        else f"{int((~a.tokens.trained).sum())} tokens of this model are under-trained."
    ),
)
control = c5.toggle(
    "Control",
    key="grid.control",
    help="The same view of a random Gaussian matrix of this shape (one per layer).",
)

state.set_grid_view(
    state.GridView(
        end=end, n=n if rank > 1 else view.n, k=k, filters=tuple(filters), control=bool(control)
    )  # fmt: skip
)

components.step_buttons(sel, a, key="grid")
if method == "svd":
    control = control and loaders.ensure_controls(a)
elif control:
    control = loaders.ensure_method(a, method, sel.kind, sel.layer, control=True) is not None
# A highlighted direction is an SVD direction (a search hit, a link).
highlight = None if control or method != "svd" else sel.direction

try:
    fetched = n if highlight is None else max(n, highlight + 1)
    if method == "svd":
        dirs = loaders.component_directions(
            sel, n=fetched, k=k, filters=tuple(filters), control=control
        )
    else:
        dirs = loaders.method_component_directions(
            sel, method, n=fetched, k=k, filters=tuple(filters), control=control
        )
except CoreError as exc:
    st.error(plain(exc))
    st.stop()
# A highlighted direction (a search hit, a link) is shown first, whatever its index.
dirs = grid.shown_directions(dirs, n, highlight)

label = sel.label() if method == "svd" else grid.method_label(method, sel.kind, sel.layer)
what = f"random control for {label}" if control else label
st.subheader(what)
if method != "svd" and built is not None:
    st.caption(grid.method_caption(method, built))
if highlight is not None:
    st.info(
        f"Highlighting direction #{highlight} (first column, marked ◀ and in bold) on the {grid.ENDS[end]}."
    )
tokens, values = grid.grid_frames(dirs, end)
if method != "svd":  # a component's header value is its share of squared norm, not a σ
    tokens, values = grid.share_headers(tokens), grid.share_headers(values)
st.dataframe(
    grid.style_grid(tokens, values, highlight, dirs),
    height=min(36 * (len(tokens) + 1) + 3, 1200),
    key="grid.table",
)
st.caption(
    (
        "Columns: singular directions by singular value (σ in the header; ≈ near-degenerate). "
        if method == "svd"
        else "Columns: components by the share of squared norm they explain (in the header). "
    )
    + "Cells: tokens whose unembedding has the largest (blue) or most negative (red) dot "
    "product with the direction"
    + (" (NMF: the component's promoted and suppressed token weights)" if method == "nmf" else "")
    + "; colour strength is the projection, on one scale per table."
)

stem = label.replace(" ", "_") + ("_control" if control else "")
meta = {
    "model": sel.model,
    "processing": sel.processing,
    "kind": sel.kind,
    "layer": sel.layer,
    "head": sel.component_head,
    "control": control,
    "filters": list(filters),
    "method": method,
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

if not control and method == "svd":
    try:
        labelled = loaders.component_directions(sel, n=n, k=k)  # unfiltered: tokens are stored
        render_label_controls(a, labelled, sel.kind, sel.layer, sel.head, key="grid.labels")
    except CoreError as exc:
        st.error(plain(exc))
