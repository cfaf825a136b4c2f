"""Spectra page: singular values of the selected matrix beside a random control."""

import streamlit as st
from core.settings import HEAD_KINDS
from dashboard import components, loaders
from dashboard.builders import spectra

sel, a = components.setup()

rank = a.svd.kinds[sel.kind].decomposition.rank
overlays = ["component", "layers"] if sel.kind not in HEAD_KINDS else list(spectra.OVERLAYS)
if sel.kind == "embed":
    overlays = ["component"]
c1, c2, c3, c4 = st.columns([3, 1, 1, 3])
overlay = c1.radio(
    "Overlay",
    overlays,
    format_func=lambda o: (
        "this head in every layer" if o == "layers" and sel.has_head else spectra.OVERLAYS[o]
    ),
    horizontal=True,
    key="spectra.overlay",
)
log = c2.toggle("Log scale", value=True, key="spectra.log")
show_control = c3.toggle("Control", value=True, key="spectra.control")
show_control = show_control and loaders.ensure_controls(a)
cut = (
    c4.slider(
        "Show the first singular values",
        1,
        rank,
        rank,
        key="spectra.cut",
        help="The rank of the matrix: d_head for OV/QK heads.",
    )
    if rank > 1
    else rank
)

panels = st.columns(2) if show_control else [st.container()]
for side, panel in zip((False, True), panels):
    spec = loaders.cached_spec(
        "spectrum",
        sel,
        spectra.spectrum_view,
        sel.kind,
        sel.layer,
        sel.component_head,
        overlay,
        show_control,
        log,
        cut,
        side,
    )
    panel.vega_lite_chart(spec, key=f"spectra.chart.{int(side)}", width="stretch")
st.caption(
    f"{sel.label()}: rank {rank}. Grey panel: a random Gaussian matrix of the same shape "
    "(one per layer). Red rings: near-degenerate singular values (within the tolerance of a "
    "neighbour); their vectors are only defined up to a rotation. Hover for values."
    + (
        " Orange dashed rule: the quantization noise floor of this matrix (its weights were "
        "quantized; see the model card): grey crosses mark singular values under it, "
        "which are not resolvable from the rounding noise."
        if spectra.noise_floors(a, sel.kind, [(sel.layer, sel.component_head)])
        else ""
    )
)
with st.expander("Values"):
    df = loaders.cached_table(
        "spectrum",
        sel,
        spectra.spectrum_frame,
        sel.kind,
        sel.layer,
        sel.component_head,
        overlay,
        show_control,
    )
    st.dataframe(df[df["index"] < cut], hide_index=True, width="stretch", key="spectra.values")
