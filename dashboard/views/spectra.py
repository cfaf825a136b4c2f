"""Spectra page: singular values of the selected matrix beside a random control."""

import streamlit as st
from core.settings import HEAD_KINDS
from dashboard import components, loaders, state
from dashboard.builders import spectra

sel, a = components.setup()

rank = a.svd.kinds[sel.kind].decomposition.rank
overlays = ["component", "layers"] if sel.kind not in HEAD_KINDS else list(spectra.OVERLAYS)
if sel.kind == "embed":
    overlays = ["component"]
wanted = state.spectra_view().overlay
state.seed({"spectra.overlay": wanted if wanted in overlays else "component"})
if st.session_state["spectra.overlay"] not in overlays:  # a kind without this overlay
    st.session_state["spectra.overlay"] = "component"
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
if overlay != "component" or wanted in overlays:
    # Keep "heads" in the URL while an MLP matrix (which lacks it) is shown.
    state.set_spectra_view(state.SpectraView(overlay))
log = c2.toggle("Log scale", value=True, key="spectra.log")
show_control = c3.toggle("Control", value=True, key="spectra.control")
show_control = show_control and loaders.ensure_controls(a, sel.kind)
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
    if side:
        panel.vega_lite_chart(spec, key=f"spectra.chart.{int(side)}", width="stretch")
        continue
    event = panel.vega_lite_chart(
        spec,
        key=f"spectra.chart.{int(side)}",
        width="stretch",
        on_select="rerun",
        selection_mode=spectra.PICK,
    )
    picked = spectra.picked_point(event["selection"] if event else None, sel.kind)
    if picked is not None:
        state.open_component(*picked)
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
noise = (
    " Orange dashed rule: the quantization noise floor of this matrix (its weights were "
    "quantized; see the model card): grey crosses mark singular values under it, which are "
    "not resolvable from the rounding noise."
    if spectra.noise_floors(a, sel.kind, [(sel.layer, sel.component_head)])
    else ""
)
st.caption(spectra.caption(df, sel.label(), rank, show_control) + noise)
with st.expander("Values"):
    st.dataframe(df[df["index"] < cut], hide_index=True, width="stretch", key="spectra.values")
