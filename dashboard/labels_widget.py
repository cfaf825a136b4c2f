"""Manual labelling controls for one component's directions, embeddable in any page.

    dirs = loaders.component_directions(sel, n=10, k=15)
    render_label_controls(a, dirs, "ov", layer=3, head=5)

A choice of end (top: the largest projections, or bottom: the most negative ones; each
end is labelled on its own) above one row per direction (index, that end's tokens, the
offline labeller's stored verdict on it if any, an interpretable yes/no/unset choice and
a label box) inside a form; "Save labels" writes manual records (``labeller="manual"``,
with their ``end``) to ``<cache_dir>/labels.sqlite`` of the analysis's cache directory.
It needs only Streamlit, core, the analysis and the directions (give it unfiltered
ones: their tokens are stored with the labels).
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st
from core.analysis import Analysis
from core.label.store import ENDS, MANUAL, LabelRecord, LabelStore, reading
from core.query import Direction
from core.settings import HEAD_KINDS

from dashboard.markup import plain

CHOICES = ("unset", "yes", "no")
MAX_ROWS = 100  # a form of hundreds of radios is unusable and slow
END_NAMES = {"top": "top end", "bottom": "bottom end"}


def _choice(r: LabelRecord | None) -> str:
    if r is None or r.interpretable is None:
        return "unset"
    return "yes" if r.interpretable else "no"


def render_label_controls(
    analysis: Analysis,
    directions: Sequence[Direction],
    kind: str,
    layer: int,
    head: int | None = None,
    key: str = "labels",
    end: str = "top",
) -> list[LabelRecord]:
    """Mark one end of ``directions`` of ``(kind, layer, head)`` interpretable or not
    and give them labels; returns the component's manual records (both ends) after any
    save.

    The end is chosen above the form (``end``: the first choice; ``both`` or anything
    else: top); its tokens are shown
    (and stored with the label). ``key`` prefixes the widget keys, so a page can draw
    the controls more than once. At most :data:`MAX_ROWS` rows.
    """
    head = head if kind in HEAD_KINDS else None
    meta, read = analysis.meta, reading(analysis.settings)
    dirs = list(directions)[:MAX_ROWS]
    wkey = f"{key}.{meta.weights_hash[:12]}.{kind}.{layer}.{head}"
    chosen = st.radio(
        "End",
        ENDS,
        index=ENDS.index(end) if end in ENDS else 0,
        format_func=END_NAMES.__getitem__,
        horizontal=True,
        key=f"{wkey}.end",
        help="Which end of each direction to label: its largest token projections (top) "
        "or its most negative ones (bottom). Each end has its own label.",
    )
    end = chosen if chosen in ENDS else ENDS[0]
    # Each end has its own widgets, so switching ends shows that end's stored values.
    ekey = f"{wkey}.{end}"
    with LabelStore.in_cache(analysis.settings.cache_dir) as store:

        def stored(i: int, labeller: str) -> LabelRecord | None:
            return store.get(meta.name, meta.weights_hash, kind, layer, head, i, labeller,
                             end=end, **read)  # fmt: skip

        manual = {d.index: stored(d.index, MANUAL) for d in dirs}
        offline = {d.index: stored(d.index, "offline") for d in dirs}
        with st.form(key=f"{ekey}.form", border=True):
            st.markdown(
                f"**Label directions: {END_NAMES[end]}** (saved for this model's weights, "
                f"{read['processing']} processing, {read['projection']} projection)"
            )
            rows = []
            for d in dirs:
                ends = d.top if end == "top" else d.bottom
                toks = [t for _, t, _ in ends]
                c = st.columns([1, 6, 3, 4])
                c[0].markdown(f"**#{d.index}**")
                c[1].caption(plain(" ".join(toks), 2000))  # tokens may hold markdown
                auto = offline[d.index]
                hint = (
                    f"offline: {'yes' if auto.interpretable else 'no'} · {auto.label}"
                    if auto is not None
                    else ""
                )
                choice = c[2].radio(
                    f"Interpretable #{d.index}",
                    CHOICES,
                    index=CHOICES.index(_choice(manual[d.index])),
                    horizontal=True,
                    key=f"{ekey}.{d.index}.interp",
                    label_visibility="collapsed",
                )
                mine = manual[d.index]
                label = c[3].text_input(
                    f"Label #{d.index}",
                    value=mine.label if mine is not None else "",
                    key=f"{ekey}.{d.index}.label",
                    placeholder=hint or "label",
                    label_visibility="collapsed",
                )
                rows.append((d, [raw for raw, _, _ in ends], choice, label))
            saved = st.form_submit_button("Save labels")
        if saved:
            put, dropped = [], 0
            for d, raw, choice, label in rows:
                rec = LabelRecord(
                    model=meta.name,
                    weights_hash=meta.weights_hash,
                    matrix=kind,
                    layer=layer,
                    head=head,
                    index=d.index,
                    labeller=MANUAL,
                    interpretable=None if choice == "unset" else choice == "yes",
                    label=label.strip(),
                    tokens=", ".join(raw),
                    end=end,
                    **read,
                )
                if rec.interpretable is None and not rec.label:
                    dropped += int(store.delete(rec))
                else:
                    put.append(rec)
            store.put(put)
            st.toast(f"Saved {len(put)} label(s)" + (f", cleared {dropped}" if dropped else ""))
        return [
            r
            for r in store.query(
                model=meta.name,
                weights_hash=meta.weights_hash,
                matrix=kind,
                labeller=MANUAL,
                control=False,
                **read,
            )  # fmt: skip
            if r.layer == layer and r.head == head
        ]
