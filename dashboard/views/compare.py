"""Compare page: the sidebar's component in two models (matched directions, |cos|
heatmap), or through a checkpoint series (consecutive heatmaps, every component's
drift, spectra over training, and one direction's trajectory with a way to open any
checkpoint on the grid)."""

from pathlib import Path

import streamlit as st
from core.compare import list_checkpoints
from core.errors import CoreError
from dashboard import components, config, limits, state
from dashboard.builders import compare
from dashboard.loaders import compare as compare_loaders
from dashboard.markup import plain

sel, a = components.setup()
head = sel.component_head
cdir = str(config.cache_dir())
series_folders = config.checkpoint_series()
MODES = ["Checkpoint series", "Two models"]
state.seed({"compare.mode": MODES[0] if series_folders else MODES[1]})
mode = st.radio("Compare", MODES, horizontal=True, key="compare.mode")

if mode == "Two models":
    options = components.model_options(sel.model)
    # Every checkpoint of every series too: a checkpoint against the final model, say.
    options += [
        c for f in series_folders for c in map(str, list_checkpoints(Path(f))) if c not in options
    ]
    other = st.selectbox(
        "Model B (model A is the sidebar's model)",
        options,
        index=options.index(sel.model),
        key="compare.other",
        help="Any model with the same tokenizer: another checkpoint, a fine-tune.",
    )
    try:
        with st.spinner(f"Matching {sel.label()}…"):
            m = compare_loaders.compare_match(
                sel.model, other, sel.processing, cdir, sel.kind, sel.layer, head
            )
    except CoreError as exc:
        st.error(plain(str(exc)))
        st.stop()
    unmatched = m["unmatched"]
    st.caption(
        f"{sel.label()}: {len(m['pairs'])} directions paired by the optimal assignment of "
        f"|cos| between token-space images; {len(unmatched)} under {m['threshold']:g} "
        f"(unmatched{': ' + ', '.join(map(str, unmatched)) if unmatched else ''}). Principal "
        "cosines of the top-8 subspaces: "
        + ", ".join(f"{c:.3f}" for c in m["principal_cosines"])
        + "."
    )
    st.dataframe(
        compare.match_frame(m, m["tops_a"], m["tops_b"]),
        hide_index=True,
        width="stretch",
        key="compare.table",
        column_config={"|cos|": st.column_config.NumberColumn(format="%.3f")},
    )
    st.altair_chart(
        compare.cos_heatmap(m["cos"], f"|cos| between {sel.label()}'s directions in A and B"),
        width="stretch",
        key="compare.heatmap",
    )
    st.stop()

if not series_folders:
    st.info(
        f"No checkpoint series under {plain(str(config.models_dir()))}: put a folder of "
        "checkpoint folders there (make demo-checkpoints CKPT_DIR=models/demo-series writes one)."
    )
    st.stop()
folder = st.selectbox(
    "Checkpoint folder", series_folders, format_func=lambda p: Path(p).name, key="compare.series"
)
models = tuple(str(p) for p in list_checkpoints(Path(folder)))
try:
    with st.spinner(f"Following {sel.label()} through {len(models)} checkpoints…"):
        t = compare_loaders.compare_series(models, sel.processing, cdir, sel.kind, sel.layer, head)
except CoreError as exc:
    st.error(plain(str(exc)))
    st.stop()

names = [compare.short(n) for n in t["checkpoints"]]
st.caption(
    f"{sel.label()} through {len(names)} checkpoints ({names[0]} … {names[-1]}): each "
    "direction is matched to its optimal partner by |cos| of token-space images."
)
left, right = st.columns(2)
left.altair_chart(compare.steps_heatmap(t), width="stretch", key="compare.steps")
right.altair_chart(
    compare.spectra_chart(t["spectra"], t["checkpoints"], f"{sel.label()} spectrum over training"),
    width="stretch",
    key="compare.spectra",
)
st.subheader("A direction's trajectory")
dirs = t["directions"]
j = st.selectbox(
    "Direction of the final checkpoint",
    list(range(len(dirs))),
    format_func=lambda i: f"{i}: " + " ".join(dirs[i]["top"][-1][:4]),
    key="compare.direction",
)
appears = names[dirs[j]["appears_at"]]
st.caption(f"Direction {j} holds |cos| ≥ 0.9 with its partner from {appears} on.")
st.altair_chart(
    compare.trajectory_chart(t, sorted({j, *range(min(4, len(dirs)))})),
    width="stretch",
    key="compare.trajectory_chart",
)
st.dataframe(
    compare.trajectory_frame(t, j), hide_index=True, width="stretch", key="compare.trajectory"
)
c1, c2 = st.columns([3, 1])
at = c1.selectbox(
    "Checkpoint to open",
    list(range(len(names))),
    format_func=lambda i: names[i],
    key="compare.open_at",
)
if c2.button("Open on the grid", key="compare.open"):
    state.open_component(
        sel.kind, sel.layer, head, direction=int(dirs[j]["partner"][at]), model=models[at]
    )
with st.expander("The embedding's sparse dictionary over training"):
    st.caption(
        "Each checkpoint's W_E gets the Methods page's dictionary (cached in its entry), "
        "beside the same fit to a random matrix of its shape and scale: a sparse overbasis "
        "is real only where the solid line falls below the dashed one."
    )
    if st.toggle("Build and show", key="compare.dictionary"):
        limits.enter("the dictionary builds")
        try:
            with st.spinner(f"Fitting the embedding dictionary of {len(models)} checkpoints…"):
                points = compare_loaders.compare_dictionary(models, sel.processing, cdir)
        except CoreError as exc:
            st.error(plain(str(exc)))
        else:
            st.altair_chart(
                compare.dictionary_chart(points), width="stretch", key="compare.dict_chart"
            )
        finally:
            limits.leave()
with st.expander("Every component of this kind, and the kind's spectrum"):
    st.altair_chart(
        compare.drift_heatmap(t["drift"], t["checkpoints"], t["components"]),
        width="stretch",
        key="compare.drift",
    )
    st.altair_chart(
        compare.spectra_chart(t["kind_spectra"], t["checkpoints"], "Mean spectrum of the kind"),
        width="stretch",
        key="compare.kind_spectra",
    )
