"""Methods page: SVD, sparse dictionary, NMF and ICA of one matrix against their random controls."""

import streamlit as st
from core.errors import CoreError
from core.settings import KIND_NAMES
from dashboard import components
from dashboard.builders import methods
from dashboard.markup import plain

sel, a = components.setup()

MATRICES = ("embed", "mlp_out", "ov")
c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
matrix = c1.selectbox(
    "Matrix",
    MATRICES,
    format_func=lambda k: "OV heads (stacked per layer)" if k == "ov" else KIND_NAMES[k],
    key="methods.matrix",
)
layers = 1 if matrix == "embed" else a.meta.n_layers
layer = c2.number_input("Layer", 0, layers - 1, 0, key="methods.layer") if layers > 1 else 0
n_label = c3.number_input(
    "Components labelled", 0, 64, 16, key="methods.label",
    help="The first n components of each method and control go to the offline labeller "
    "(MiniLM embeddings against random token sets); 0 skips it.",
)  # fmt: skip
curves = c4.toggle(
    "Dictionary curves", True, key="methods.curves",
    help="FVU against non-zeros per row and against K (d_model to 16 d_model): ten more "
    "dictionary fits (a minute or two on the demo model).",
)  # fmt: skip
args = (sel.model, sel.processing, matrix, int(layer), bool(curves), int(n_label))
run = st.button("Compare methods", type="primary", key="methods.run")
held = st.session_state.get("methods.report")
if run:
    bar = st.progress(0.0, text="Comparing…")
    try:
        rep = methods.run_report(
            a, matrix, int(layer), bool(curves), int(n_label),
            lambda f, m: bar.progress(min(1.0, max(0.0, f)), text=m),
        )  # fmt: skip
    except CoreError as exc:
        st.error(plain(exc))
        st.stop()
    finally:
        bar.empty()
    held = (args, rep)
    st.session_state["methods.report"] = held
if not held or held[0] != args:
    st.info(
        "Pick a matrix and press **Compare methods**: each method and its random Gaussian "
        "control are built (or read from the cache) and compared."
    )
    st.stop()
rep = held[1]

st.subheader("Reconstruction error")
curve_df = methods.curves_frame(rep)
st.altair_chart(methods.curves_chart(curve_df), key="methods.chart")
st.download_button(
    "Download CSV", curve_df.to_csv(index=False), f"methods_{matrix}_L{layer}.csv",
    "text/csv", key="methods.csv",
)  # fmt: skip
st.caption(
    "A sparse overbasis is only real where the dictionary's curve (solid) falls below the "
    "same dictionary fitted to a random Gaussian matrix of the same shape and scale "
    "(dashed), and below the SVD with as many parameters. "
    + " ".join(f"{note[0].upper()}{note[1:]}." for note in rep["notes"])
)
if rep["interpretable"]:
    st.subheader("Interpretable components (offline labeller)")
    st.caption(
        "Each end of a component is judged on its own: the tokens of its largest projections "
        "(top) and of its most negative ones (bottom)."
    )
    st.dataframe(
        methods.interpretable_frame(rep), hide_index=True, key="methods.labels",
        column_config={"interpretable": st.column_config.ProgressColumn(
            "interpretable", format="%.2f", min_value=0.0, max_value=1.0)},
    )  # fmt: skip
u = rep["unseen_atoms"]
st.subheader("Atoms the SVD cannot see")
st.caption(
    f"{u['fraction']:.1%} of the dictionary's atoms have |cos| below {u['threshold']} to "
    f"every one of the top {u['top_svd_directions']} singular directions (the farthest 20)."
)
st.dataframe(methods.unseen_frame(rep), hide_index=True, key="methods.unseen")
if rep["rays_vs_directions"]:
    r = rep["rays_vs_directions"]
    st.caption(
        f"Rays vs directions: the rows' median largest |cos| to the top "
        f"{r['top_directions']} singular directions is {r['median_row']:.3f} against "
        f"{r['median_baseline']:.3f} for random vectors; "
        f"{r['share_above_baseline_q95']:.1%} of rows lie above the random 95th percentile."
    )
