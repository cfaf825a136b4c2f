"""Weight-editing page: remove or scale singular directions and see what changes.

Edits live in this session's ``state.edit_history`` (and the URL); they are applied to a
copy of the model, never to the shared one.
"""

import streamlit as st
from core.edit import EditSet
from core.errors import CoreError
from dashboard import components, limits, loaders, state
from dashboard.builders import ablation as ab
from dashboard.builders import edit as eb
from dashboard.builders.names import component_label
from dashboard.loaders import edit as edit_loaders
from dashboard.markup import plain

#: Directions the sweep removes one at a time, unless the slider says otherwise.
N_SWEEP = 16

sel, a = components.setup()
hist, dropped = state.edit_history(sel)
if dropped:
    st.info(
        f"The model or processing changed, so the {dropped} edit(s) (whose indices refer "
        "to it) were cleared."
    )


def _push(edits: EditSet) -> None:
    state.set_edit_history(state.edit_history(sel)[0].push(edits))


def _add_selected(scale: float) -> None:
    e = eb.edit_for_selection(
        sel.kind, sel.layer, sel.component_head, int(st.session_state["edit.index"]), scale
    )
    if e is not None:
        _push(state.edit_history(sel)[0].current.add(e))


def _add_spec(spec: str) -> None:
    _push(state.edit_history(sel)[0].current.add(*EditSet.parse(spec)))


def _undo() -> None:
    state.set_edit_history(state.edit_history(sel)[0].undo())


def _reset() -> None:
    state.set_edit_history(state.edit_history(sel)[0].reset())


# ----------------------------------------------------------------- pick directions
left, right = st.columns(2)
with left:
    st.subheader("From the grid selection")
    scale = st.slider(
        "Scale", 0.0, 2.0, 0.0, 0.05, key="edit.scale", help="0 removes, 1 keeps, 2 doubles."
    )
    if eb.edit_for_selection(sel.kind, sel.layer, sel.component_head, 0, 0.0) is None:
        st.info(f"{sel.label()} cannot be edited; pick OV or an MLP matrix in the sidebar.")
    else:
        rank = a.svd.kinds[sel.kind].decomposition.rank
        # Follow the grid's highlighted direction when it changes; else keep the user's.
        seen = (sel.kind, sel.layer, sel.component_head, sel.direction)
        if "edit.index" not in st.session_state or st.session_state.get("edit._seen") != seen:
            st.session_state["edit.index"] = min(sel.direction or 0, rank - 1)
            st.session_state["edit._seen"] = seen
        st.number_input(f"Direction of {sel.label()}", 0, rank - 1, key="edit.index")
        st.button("Add", key="edit.add", on_click=_add_selected, args=(scale,), type="primary")
with right:
    st.subheader("From semantic search")
    search = state.last_search(sel)
    if search is None:
        st.caption("Run a query on the Semantic search page to remove all its matches here.")
    else:
        try:
            found = loaders.search_edit_spec(sel, search)
        except CoreError as exc:
            st.error(plain(exc))
            found = ""
        found_set = EditSet.parse(found) if found else EditSet()
        n_found = len(found_set)
        have = {e.key for e in hist.current}
        done = bool(n_found) and all(e.key in have for e in found_set)
        st.caption(
            f"{n_found} OV/MLP directions match {plain(repr(search.query))} significantly "
            f"at |cosine| ≥ {search.threshold:.2f} (of the top {search.top} hits; hits no "
            "better than random queries of the same shape are not removed)."
        )
        st.button(
            f"Remove all {n_found} matches",
            key="edit.add_search",
            on_click=_add_spec,
            args=(found,),
            disabled=not n_found or done,
            help="They are all in the edit set already." if done else None,
        )

edits = hist.current
c1, c2, c3 = st.columns([1, 1, 4])
c1.button("Undo", key="edit.undo", on_click=_undo, disabled=len(hist.states) < 2)
c2.button("Reset", key="edit.reset", on_click=_reset, disabled=not len(edits))
if len(edits):
    spec = edits.spec()
    c3.download_button(
        "Download the edited model (.zip)",
        lambda: eb.export_zip(a, spec),
        file_name="edited-model.zip",
        mime="application/zip",
        key="edit.export",
        on_click="ignore",
        help="A Hugging Face checkpoint folder (weights, config, tokenizer and the edit "
        "list), built in a temporary folder when you click.",
    )
st.caption(f"Current edits ({len(edits)}): `{edits.spec()}`" if len(edits) else "No edits yet.")
st.dataframe(eb.edits_frame(edits), hide_index=True, key="edit.table")

# ----------------------------------------------------------------- measure
p1, p2, p3 = st.columns([4, 2, 1])
measure = state.measure_view()
state.seed(
    {"edit.prompt": measure.prompt, "edit.target": measure.target, "edit.max_new": measure.max_new}
)
prompt = p1.text_input("Prompt", key="edit.prompt", placeholder="e.g. The house was on")
target = p2.text_input("Target", key="edit.target", placeholder="e.g. ' fire' (mind the space)")
max_new = int(p3.number_input("New tokens", 0, 64, key="edit.max_new"))
state.set_measure_view(state.MeasureView(prompt, target, max_new))
if not prompt.strip() or not target:
    loaders.preload_model(sel)  # loaded while the prompt is typed
    st.info("Give a prompt and a target token to measure the edits.")
    st.stop()

view_options = eb.matrix_options(edits, (sel.kind, sel.layer, sel.component_head))
if not view_options:
    st.info("Add a direction to see its effect.")
    st.stop()
kind, layer, head = st.selectbox(
    "Matrix to inspect", view_options, format_func=lambda c: component_label(*c), key="edit.view"
)

# The sweep's plan needs only the weights: started now, it runs while the report's first
# part loads the model (the slider below keeps its value in the session).
n_sweep = int(st.session_state.get("edit.n_sweep", N_SWEEP))
edit_loaders.start_sweep_plan(sel, (kind, layer, head), n_sweep)
limits.enter("this edit measurement")
try:
    if len(edits):
        # Each part is drawn as soon as it is ready: the target first (about a second),
        # then specificity and the continuations (seconds each on a 2-core CPU).
        shift = edit_loaders.target_shift(sel, spec, prompt, target)
        st.subheader("Target")
        st.dataframe(eb.logprob_frame(shift), hide_index=True, key="edit.logprob")
        st.subheader("Against random edits")
        st.markdown(plain(eb.baseline_summary(shift)))
        st.dataframe(
            eb.baseline_frame(shift),
            hide_index=True,
            key="edit.baseline",
            column_config={
                "delta": st.column_config.NumberColumn("Δ log p(target)", format="%+.4f"),
            },
        )
        reference = edit_loaders.specificity(sel, spec)
        st.altair_chart(
            eb.specificity_chart(eb.specificity_frame(shift, reference)), key="edit.spec"
        )
        st.caption(
            f"Reference: KL(before‖after) of next-token distributions over "
            f"{reference.n_tokens} held-out tokens, and the change in their loss."
        )
        st.subheader("Greedy continuations")
        b, af = st.columns(2)
        b.markdown("**Before**")
        text = edit_loaders.continuation(sel, "", prompt, max_new)
        b.code(prompt + text, language=None, wrap_lines=True)
        af.markdown("**After**")
        text = edit_loaders.continuation(sel, spec, prompt, max_new)
        af.code(prompt + text, language=None, wrap_lines=True)
    st.subheader(f"Sweep: {component_label(kind, layer, head)}")
    n_sweep = st.slider("Directions swept", 1, 64, N_SWEEP, key="edit.n_sweep")
    rows, base = edit_loaders.sweep(sel, (kind, layer, head), n_sweep, prompt, target)
    chosen = {e.index for e in edits if e.component == (kind, layer, head)}
    frame = ab.sweep_frame(rows, chosen, base)
    st.altair_chart(
        ab.sweep_chart(frame, "Each direction removed alone", ab.sweep_random_frame(rows, base)),
        key="edit.sweep_chart",
    )
    st.caption(
        f"{int(frame['beyond_random'].sum())} of {len(frame)} directions move the target more "
        "than each of their matched random draws (black ticks: the same direction index in "
        "other components of this kind, nearest in σ); the others are faded."
    )
    st.subheader("Directions before → after")
    edited_here = {e.index for e in edits if e.component == (kind, layer, head)}
    n_cmp = eb.comparison_size(edits, kind, layer, head, 12)
    cmp_ = loaders.cached_table(
        "edit.compare", sel, eb.compute_comparison, edits.spec(), kind, layer, head, n_cmp
    )
    st.dataframe(
        eb.comparison_frame(cmp_, first=12, keep=edited_here),
        hide_index=True,
        key="edit.compare_table",
        column_config={
            "sigma": st.column_config.NumberColumn("σ", format="%.4g", width="small"),
            "sigma_after": st.column_config.NumberColumn("σ after", format="%.4g"),
            "cosine": st.column_config.NumberColumn("cos", format="%+.3f"),
        },
    )
    st.caption(
        "The first 12 directions and every edited one. The edited matrix is decomposed "
        "afresh; directions are matched by |cosine|, so a new index or a sign flip "
        "(cos −1, ends swapped) is the same direction."
    )
except CoreError as exc:
    st.error(plain(exc))
finally:
    limits.leave()
