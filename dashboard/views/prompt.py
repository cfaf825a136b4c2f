"""Prompt page: the logit lens of a prompt, and the directions it uses at a position.

The prompt, target, chosen position and layer live in ``state.prompt_view`` (and the
URL). The model is loaded only here: in the background while the prompt box is empty,
so that it is ready (or nearly) when the prompt is sent. The prompt runs through the
model once (:mod:`dashboard.loaders.prompt`): the lens and every cell's tables share it.
"""

from dataclasses import replace

import streamlit as st
from core.errors import CoreError
from dashboard import components, limits, loaders, state
from dashboard.builders import prompt as pb
from dashboard.loaders import prompt as prompt_loaders
from dashboard.markup import plain
from dashboard.viewstate import MAX_PROMPT_CHARS

sel, a = components.setup()
view = state.prompt_view()
state.seed({"prompt.text": view.prompt, "prompt.target": view.target, "prompt.show": view.show})
c1, c2, c3 = st.columns([5, 2, 2])
text = c1.text_input(
    "Prompt",
    key="prompt.text",
    max_chars=MAX_PROMPT_CHARS,
    placeholder="e.g. The fire burned in the",
)
target = c2.text_input(
    "Target",
    key="prompt.target",
    placeholder="the next token",
    help="A token ranked at every position (mind the leading space, e.g. ' fire'); "
    "empty: each position's next token of the prompt.",
)
show = c3.radio(
    "Colour by", list(pb.SHOW), key="prompt.show", format_func=pb.SHOW.get, horizontal=True
)
if (text, target) != (view.prompt, view.target):  # a new prompt: back to the last cell
    view = replace(view, position=None, layer=None)
view = replace(view, prompt=text, target=target, show=show)
state.set_prompt_view(view)
if not text.strip():
    loaders.preload_model(sel)  # loaded while the prompt is typed
    st.info(
        "Type a prompt: the page runs it through the model and shows, for every layer and "
        "position, what the residual stream predicts (the logit lens), and which singular "
        "directions of a layer's heads and MLP are most active at a position."
    )
    st.stop()

limits.enter("this prompt's forward pass")
try:
    lens = prompt_loaders.prompt_lens(sel, text, target, 5)
except CoreError as exc:
    st.error(plain(exc))
    st.stop()
finally:
    limits.leave()

tokens = list(lens[lens["row"] == 0].sort_values("position")["token"])
n_pos, n_layers = len(tokens), a.meta.n_layers
if target:
    st.caption(f"Ranking the target token {plain(repr(lens['target'].iloc[0]))} at every position.")
else:
    st.caption("Ranking each position's next token of the prompt (the last position has none).")


def _cell(position: int | None, layer: int | None) -> tuple[int, int]:
    """The chosen position and block, the last ones when none is chosen."""
    pos = n_pos - 1 if position is None else min(position, n_pos - 1)
    return pos, n_layers - 1 if layer is None else min(layer, n_layers - 1)


pos, layer = _cell(view.position, view.layer)
# Row l + 1 is after block l.
spec = prompt_loaders.prompt_lens_spec(sel, text, target, 5, show, (pos, layer + 1))
event = st.vega_lite_chart(spec, key="prompt.heatmap", on_select="rerun", selection_mode=pb.PICK)
picked = pb.picked_cell(event["selection"] if event else None)
if picked is None:  # so that clicking the same cell again later picks it again
    st.session_state.pop("prompt._picked", None)
elif picked != st.session_state.get("prompt._picked"):
    st.session_state["prompt._picked"] = picked
    view = replace(view, position=picked[0], layer=pb.block_of_row(picked[1]))
    state.set_prompt_view(view)
    st.rerun()  # the outline follows the picked cell
st.caption(
    "Each cell is the residual stream after that layer (the embedding at the bottom) "
    "through the final norm and the unembedding. Click a cell to show its position and "
    "layer below."
)


def _chosen(name: str) -> None:
    state.set_prompt_view(
        replace(state.prompt_view(), **{name: st.session_state[f"prompt.{name}"]})
    )


st.session_state["prompt.position"], st.session_state["prompt.layer"] = pos, layer
p1, p2, p3, p4 = st.columns([3, 2, 2, 3])
p1.selectbox(
    "Position",
    range(n_pos),
    key="prompt.position",
    format_func=lambda i: f"{i}: {tokens[i]}",
    on_change=_chosen,
    args=("position",),
)
p2.selectbox(
    "Layer",
    range(n_layers),
    key="prompt.layer",
    format_func=lambda i: f"L{i}",
    on_change=_chosen,
    args=("layer",),
)
n = int(p3.number_input("Directions", 1, 50, 10, key="prompt.n"))
by = p4.radio(
    "Rank reading side by",
    ("activation", "scaled"),
    key="prompt.by",
    format_func={"activation": "|activation|", "scaled": "|σ × activation|"}.get,
    horizontal=True,
    help="|σ × activation| is how much a reading direction passes on to the matrix's "
    "output; a direction with a tiny σ can read a huge input (e.g. a massive-activation "
    "dimension). The writing side is always ranked by |activation|.",
)

COLUMNS = {
    "kind": None,
    "matrix": None,
    "layer": None,
    "head": None,
    "index": st.column_config.NumberColumn("direction"),
    "activation": st.column_config.NumberColumn("activation", format="%+.3f"),
    "sigma": st.column_config.NumberColumn("σ", format="%.4g", width="small"),
    "end": st.column_config.TextColumn("end", help="The end of the direction it pushes toward."),
}
SIDES = {
    "read": (
        "Reading side",
        "What the layer's heads (OV) and MLP (in, gate) read here: the dot product of each "
        "unit read vector with the normalised stream the matrix receives.",
    ),
    "write": (
        "Writing side",
        "What the layer's heads (OV) and MLP (out) write here: the component of each "
        "head's or the MLP's output along each unit write vector.",
    ),
}
token = tokens[pos]
for side, (title, what) in SIDES.items():
    st.subheader(f"{title}: L{layer} at position {pos} ({plain(token, 40)})")
    st.caption(what)
    limits.enter("this prompt's active directions")
    try:
        df = prompt_loaders.prompt_active(sel, text, layer, pos, side, n, 10, by)
    except CoreError as exc:
        st.error(plain(exc))
        continue
    finally:
        limits.leave()
    picked_row = st.dataframe(
        df,
        hide_index=True,
        width="stretch",
        on_select="rerun",
        selection_mode="single-row",
        key=f"prompt.{side}",
        column_config=COLUMNS,
    )
    rows = picked_row.selection.rows if picked_row is not None else []
    if rows and rows[0] < len(df):
        kind, lyr, head, index, end = pb.row_direction(df.iloc[rows[0]])
        state.open_component(kind, lyr, head, index, end=end)
st.caption(
    "Signed activations: positive pushes toward the direction's top tokens, negative "
    "toward its bottom tokens (the tokens shown). Click a row to open the direction on "
    "the cluster grid."
)
