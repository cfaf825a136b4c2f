"""Labels & statistics page: how many directions are interpretable, by block, index and
model, for each labeller and each end of the directions, beside the random control;
searchable labels; offline sweep."""

import streamlit as st
from core.errors import CoreError
from core.settings import BLOCK_NAMES
from dashboard import components, config, limits, loaders
from dashboard.builders import calibration
from dashboard.builders import statistics as stats
from dashboard.labels_widget import render_label_controls
from dashboard.markup import plain

sel, a = components.setup()
cache = config.cache_dir()

with st.expander("Label this model with the offline labeller", expanded=False):
    have = components.available_kinds(a)
    c1, c2, c3 = st.columns([4, 3, 2])
    kinds = c1.multiselect(
        "Blocks",
        have,
        default=[k for k in ("ov", "mlp_in", "mlp_out") if k in have],
        format_func=BLOCK_NAMES.__getitem__,
        key="statistics.kinds",
    )
    n = c2.slider("Directions per component", 1, 50, 30, key="statistics.n")
    control = c3.checkbox("Random control too", value=True, key="statistics.control")
    st.caption(
        "Scores both ends of each direction (its 15 largest and its 15 most negative "
        "tokens, each on its own) with all-MiniLM-L6-v2 against random token sets of this "
        "vocabulary (no network); interpretable = z ≥ 2, or, below, the cut calibrated on "
        "the random control. Results are stored in labels.sqlite beside the cache and "
        "replace earlier offline verdicts."
    )
    if st.button("Run offline labeller", key="statistics.run", disabled=not kinds):
        from core.label.sweep import store_labels, sweep_offline

        limits.enter("the offline labeller")
        bar = st.progress(0.0, text="loading the embedding model")
        try:

            def report(frac: float, message: str) -> None:
                bar.progress(frac, text=message)

            out = sweep_offline(a, kinds, n=n, control=control, progress=report)
            st.success(f"Labelled {store_labels(a, out)} directions.")
        except CoreError as exc:
            st.error(plain(exc))
        finally:
            limits.leave()
        bar.empty()

df = stats.read_labels(cache)
if df.empty:
    st.info("No labels yet: run the offline labeller above, `python -m core label`, or "
            "mark directions below.")  # fmt: skip
else:
    scope = st.radio(
        "Scope",
        ["this model", "all models"],
        horizontal=True,
        key="statistics.scope",
        help="This model: its current weights, read with this page's processing and "
        "projection (a label made under another reading is about other directions).",
    )
    mine = stats.this_reading(df, a.meta, a.settings)
    view = mine if scope == "this model" else df
    if view.empty:
        st.info(stats.empty_note(df, a.meta, a.settings))
    else:
        st.subheader("Interpretable fraction per block")
        st.caption(
            "Each end of a direction is labelled on its own: the top end (largest token "
            "projections; the sign rule makes it the stronger one) and the bottom end (most "
            "negative), one row of panels each."
        )
        st.altair_chart(stats.block_chart(view))
        st.subheader("Per layer")
        st.altair_chart(stats.layer_chart(view))
        st.subheader("Per singular-vector index")
        st.altair_chart(stats.index_chart(view))
        st.dataframe(stats.summary_table(view), hide_index=True, width="stretch")
        st.subheader("Calibrated against the random control")
        rate = st.select_slider(
            "Control called interpretable",
            options=[0.01, 0.02, 0.05, 0.1],
            value=0.05,
            format_func=lambda r: f"{r:.0%}",
            key="statistics.rate",
            help="Each block's cut is set, per end, on half of the same end of its control "
            "directions so that this share of them is called interpretable; the other half "
            "checks it.",
        )
        cal = calibration.calibrated(mine, rate=rate)
        if cal.empty:
            st.info(
                "Calibration needs scored labels of this model's random control: run the "
                "offline labeller above with 'Random control too'."
            )
        else:
            st.caption(
                f"Interpretable = score above the block's cut, which calls {rate:.0%} of the "
                "control interpretable; each end has its own cut, fitted on the same end of "
                "the control (circles: top ends, squares: bottom ends). The "
                "held-out column is the other half of the control (it should be near that "
                "rate); the gap is weights minus held-out control, with a 95% interval "
                "(Newcombe)."
            )
            st.altair_chart(calibration.gap_chart(cal))
            st.dataframe(cal, hide_index=True, width="stretch")
            per_index = calibration.calibrated(mine, by=["index"], rate=rate)
            st.altair_chart(calibration.gap_chart(per_index, "index"))
    st.subheader("Per model")
    st.altair_chart(stats.model_chart(df))

    st.subheader("Search labels")
    c1, c2, c3, c4 = st.columns([4, 2, 2, 2])
    text = c1.text_input(
        "Label or token contains", key="statistics.search", placeholder="e.g. fire"
    )
    labellers = sorted(df["labeller"].unique())
    who = c2.selectbox("Labeller", ["any", *labellers], key="statistics.who")
    verdict = c3.selectbox("Verdict", ["any", "interpretable", "not"], key="statistics.verdict")
    ctrl = c4.checkbox("Include control", key="statistics.ctrl")
    hits = stats.search_labels(
        view if not view.empty else df,
        text,
        None if who == "any" else who,
        None if verdict == "any" else verdict == "interpretable",
        ctrl,
    )
    st.caption(f"{len(hits)} label(s).")
    st.dataframe(
        hits.drop(columns=["weights_hash", "matrix", "control"]),
        hide_index=True,
        width="stretch",
        height=min(36 * (len(hits) + 1) + 3, 500),
    )
    st.download_button(
        "Download all labels (CSV)",
        limits.queued(lambda: stats.csv_text(cache)),  # built on click, one export at a time
        file_name="labels.csv",
        mime="text/csv",
        key="statistics.csv",
    )

st.subheader(f"Label {sel.label()} by hand")
dirs = loaders.component_directions(sel, n=10, k=15)
render_label_controls(a, dirs, sel.kind, sel.layer, sel.head, key="statistics.manual")
