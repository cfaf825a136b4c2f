"""Experiments page: rank-k truncation of every layer's matrix and the loss recovered."""

import streamlit as st
from core.experiments import DEFAULT_KS
from core.settings import KIND_NAMES
from dashboard import components, loaders
from dashboard.builders import experiments

sel, a = components.setup()

kinds = ["ov", "mlp_in", "mlp_out"] + (["mlp_gate"] if a.meta.gated else [])
c1, c2, c3 = st.columns([2, 3, 1])
kind = c1.selectbox("Matrix", kinds, format_func=KIND_NAMES.__getitem__, key="experiments.kind")
rank = a.svd.kinds[kind].decomposition.rank
grid = [k for k in DEFAULT_KS if k < rank] + [rank]
ks = c2.multiselect("Kept ranks k", grid, default=grid, key="experiments.ks")
draws = c3.number_input("Random draws", 0, 3, 1, key="experiments.draws")
layers = st.multiselect(
    "Layers",
    list(range(a.meta.n_layers)),
    default=list(range(a.meta.n_layers)),
    key="experiments.layers",
)
st.caption(
    "Each layer's matrix (OV: every head of the layer, each to its own top k) is replaced by "
    "its top-k singular truncation, by k of its singular directions drawn at random (dashed), "
    "and by zero; loss recovered = 1 − (L_k − L) / (L_zero − L) on the reference text. "
    "Every point is a forward pass over the reference windows."
)
run = st.button("Run", type="primary", key="experiments.run", disabled=not (ks and layers))
args = (kind, tuple(sorted(layers)), tuple(sorted(ks)), int(draws))
if run:
    st.session_state["experiments.last"] = args
last = st.session_state.get("experiments.last")
if last is None:
    st.info("Choose a matrix, ranks and layers, then press Run.")
    st.stop()
df = loaders.cached_table("truncation", sel, experiments.truncation_frame, *last)
st.altair_chart(experiments.truncation_chart(df), width="stretch", key="experiments.chart")
st.dataframe(
    experiments.summary_frame(df), hide_index=True, width="stretch", key="experiments.summary"
)
