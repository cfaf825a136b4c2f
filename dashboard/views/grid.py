"""Cluster-grid page: the post's table of top tokens per singular direction."""

import streamlit as st
from core.activations import SIDES, direction_examples
from core.decompose import METHOD_MATRICES, METHOD_NAMES
from core.errors import CoreError
from core.settings import KIND_NAMES
from core.svd.project import TOKEN_FILTERS
from dashboard import components, config, loaders, state
from dashboard.builders import examples as examples_view
from dashboard.builders import grid
from dashboard.labels_widget import render_label_controls
from dashboard.loaders import examples as example_loaders
from dashboard.markup import plain

DEFINITION = (
    "A reading side's activation is the dot product of its unit singular vector with the "
    "input the matrix receives at that token (the norm's output; under post, the "
    "normalised stream before the norm's scale); a writing side's is the component along "
    "its unit singular vector of what the head or MLP writes there. Signs follow the "
    "token rule, so positive activations push toward the direction's top tokens."
)
STRONG_HELP = (
    "Share of corpus tokens whose activation is more than 3 standard deviations from "
    "its mean (both measured on the first batch of the corpus)."
)

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
    "seen in training); frequent: English words of wordfreq Zipf frequency 3 or more; "
    "norm: hides the 2% of tokens with the largest unembedding norms. "
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
    control = control and loaders.ensure_controls(a, sel.kind)
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

if not control and method == "svd" and sel.kind in SIDES:
    st.subheader("Dataset examples")
    ex_cols = st.columns([2, 2, 3])
    options = [d.index for d in dirs]
    pick = ex_cols[0].selectbox(
        "Direction",
        options,
        format_func=lambda i: f"#{i}",
        key="grid.ex_dir",
        help="Which direction's examples to show (the columns above).",
    )
    sides = SIDES[sel.kind]
    side = (
        ex_cols[1].radio("Side", sides, horizontal=True, key="grid.ex_side")
        if len(sides) > 1
        else sides[0]
    )
    slot = example_loaders.examples_slot(sel)
    if slot.value is None:
        job = slot.job
        if job is not None and not job.done.is_set():
            components.job_result(job, "Building the examples")  # its progress bar
        else:
            if job is not None and job.error is not None:
                st.error(plain(f"Building the examples failed ({job.error}); try again."))
            st.caption(
                f"No dataset examples for this model yet: building them reads "
                f"{config.example_tokens():,} tokens of the reference corpus with the model "
                "once (minutes on a CPU), in the background; the pages stay usable."
            )
            if st.button("Build dataset examples", key="grid.ex_build"):
                if example_loaders.start_examples(sel):
                    st.rerun()
                st.warning("The server is busy with other jobs; try again in a minute.")
    elif pick is not None:
        try:
            ex = direction_examples(
                slot.value, example_loaders.reference_corpus(), a.tokenizer, a.tokens.raw,
                sel.kind, sel.layer, sel.component_head, int(pick), str(side),
            )  # fmt: skip
        except CoreError as exc:
            st.error(plain(exc))
        else:
            m1, m2, m3 = ex_cols[2].columns(3)
            m1.metric("Strongly active", f"{ex.strong:.2%}", help=STRONG_HELP)
            m2.metric("Mean", f"{ex.mean:.3g}")
            m3.metric("Std", f"{ex.std:.3g}")
            scale = examples_view.scale_of(ex)
            st.caption("Top: the tokens that push toward this direction's top tokens")
            st.dataframe(
                examples_view.style_examples(examples_view.example_frame(ex.top), scale),
                key="grid.ex_top",
            )
            st.caption("Bottom: the most negative activations")
            st.dataframe(
                examples_view.style_examples(examples_view.example_frame(ex.bottom), scale),
                key="grid.ex_bottom",
            )
            st.altair_chart(examples_view.histogram_chart(ex), use_container_width=True)
            st.caption(
                f"Activation of direction #{pick} ({side} side) over {ex.n_tokens:,} "
                "tokens of the reference corpus (train split); the activating token is "
                "bold and coloured by its activation. " + DEFINITION
            )

if not control and method == "svd":
    try:
        labelled = loaders.component_directions(sel, n=n, k=k)  # unfiltered: tokens are stored
        render_label_controls(a, labelled, sel.kind, sel.layer, sel.head, "grid.labels", end)
    except CoreError as exc:
        st.error(plain(exc))
