"""Weight-editing views: the edit list, target log-probabilities, the ablation sweep,
specificity, and one matrix's directions before and after the edits. Pure functions (no
Streamlit); the ``compute_*`` ones take an ``Analysis`` first so the page can cache them
through ``dashboard.loaders``.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import altair as alt
import pandas as pd
from core.analysis import Analysis
from core.edit import (
    EDIT_KINDS,
    Comparison,
    Edit,
    EditedModel,
    EditSet,
    TargetShift,
    compare,
    export,
    reference_specificity,
    target_shift,
)
from core.edit.continuation import continuation
from core.edit.from_search import edits_from_hits
from core.edit.hf import plain_model
from core.edit.specificity import ReferencePass, Specificity
from core.search import SearchIndex, search
from core.settings import KIND_NAMES

TOKENS_SHOWN = 6
CHOSEN = "#e45756"
OTHER = "#9ca3af"


# --------------------------------------------------------------------------- edits


def edit_for_selection(
    kind: str, layer: int, head: int | None, index: int, scale: float
) -> Edit | None:
    """The edit a grid selection names, or ``None`` for kinds that cannot be edited."""
    if kind not in EDIT_KINDS:
        return None
    return Edit(kind, layer, head if kind == "ov" else None, index, scale)


def matrix_options(
    edits: EditSet, here: tuple[str, int, int | None]
) -> list[tuple[str, int, int | None]]:
    """The matrices the page can inspect: the edited ones, in first-edit order, then
    ``here`` (the sidebar's component) when it can be edited."""
    out = components_of(edits)
    if here[0] in EDIT_KINDS and here not in out:
        out.append(here)
    return out


def edits_frame(edits: EditSet) -> pd.DataFrame:
    """One row per edit: ``spec``, ``matrix``, ``layer``, ``head`` (nullable), ``index``,
    ``scale``, ``action`` (``remove`` or ``scale ×c``)."""
    rows = [
        {
            "spec": e.spec(),
            "matrix": KIND_NAMES[e.kind],
            "layer": e.layer,
            "head": pd.NA if e.head is None else e.head,
            "index": e.index,
            "scale": e.scale,
            "action": "remove" if e.scale == 0 else f"scale ×{e.scale:g}",
        }
        for e in edits
    ]
    cols = ["spec", "matrix", "layer", "head", "index", "scale", "action"]
    df = pd.DataFrame(rows, columns=cols)
    df["head"] = df["head"].astype("Int64")
    return df


def components_of(edits: EditSet) -> list[tuple[str, int, int | None]]:
    """The edited matrices, in first-edit order."""
    out: list[tuple[str, int, int | None]] = []
    for e in edits:
        if e.component not in out:
            out.append(e.component)
    return out


# --------------------------------------------------------------------------- compute


# The report's three parts, each cached on its own inputs by ``dashboard.loaders.edit``
# (the whole report took 6 s on SmolLM2-135M, rerun for any change of its inputs).


def compute_shift(a: Analysis, edited: EditedModel, prompt: str, target: str) -> TargetShift:
    """``core.edit.target_shift`` of ``edited``'s edits."""
    return target_shift(a, edited, prompt, target)


def compute_specificity(a: Analysis, edited: EditedModel, reference: ReferencePass) -> Specificity:
    """``core.edit.reference_specificity`` of ``edited`` against the unedited model's
    ``reference`` pass."""
    return reference_specificity(a, edited, reference)


def compute_continuation(
    a: Analysis, edited: EditedModel | None, prompt: str, max_new_tokens: int
) -> str:
    """The greedy continuation of ``prompt`` by ``edited``; ``None``: by the unedited
    model."""
    assert a.model is not None
    model = edited.model if edited is not None else plain_model(a)
    return continuation(model, a.model.tokenizer, prompt, max_new_tokens)


def compute_comparison(
    a: Analysis, spec: str, kind: str, layer: int, head: int | None, n: int
) -> Comparison:
    """One matrix's directions before and after the edits ``spec`` (may be empty)."""
    edits = EditSet.parse(spec) if spec else EditSet()
    return compare(a, edits, kind, layer, head, n=n, k=TOKENS_SHOWN)


def comparison_size(edits: EditSet, kind: str, layer: int, head: int | None, first: int) -> int:
    """How many directions of one matrix the before/after table must decompose: the
    ``first`` ones and every edited one (an edit of #35 must be visible)."""
    edited = [e.index for e in edits if e.component == (kind, layer, head)]
    return max([first, *(i + 1 for i in edited)])


def export_zip(a: Analysis, spec: str) -> bytes:
    """The model with the edits ``spec`` as a zipped Hugging Face checkpoint directory
    (``core.edit.export``: weights, config, tokenizer, ``svd_lens_edits.json``).

    Written in a temporary folder that is deleted afterwards, never in the cache.
    """
    edits = EditSet.parse(spec)
    with tempfile.TemporaryDirectory(prefix="svd-lens-export-") as tmp:
        root = export(a, edits, Path(tmp) / "edited-model")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(root.rglob("*")):
                if f.is_file():
                    z.write(f, Path("edited-model") / f.relative_to(root))
        return buf.getvalue()


def compute_search_spec(index: SearchIndex, query: str, threshold: float, top: int | None) -> str:
    """The edits removing every OV/MLP direction that matches ``query`` (the search page's
    significant matches: at least ``threshold`` in ``|cosine|`` and better than random
    queries of the same shape, :mod:`core.search.null`), as a spec ('' if none).
    ``index`` is the search page's cached index (``loaders.search_index``)."""
    kinds = [k for k in index.kinds if k in EDIT_KINDS]
    if not kinds:
        return ""
    res = search(
        index, query, threshold=threshold, top=top, kinds=kinds, k=1, significant_only=True
    )
    return edits_from_hits(res.hits).spec()


# --------------------------------------------------------------------------- views


def logprob_frame(shift: TargetShift) -> pd.DataFrame:
    """One row: ``target``, ``tokens``, ``before``, ``after``, ``delta``, and the
    probabilities ``p_before`` and ``p_after``."""
    import math

    return pd.DataFrame(
        [
            {
                "target": repr(shift.target),
                "tokens": len(shift.target_tokens),
                "before": shift.logprob_before,
                "after": shift.logprob_after,
                "delta": shift.delta,
                "p_before": math.exp(shift.logprob_before),
                "p_after": math.exp(shift.logprob_after),
            }
        ]
    )


def baseline_frame(shift: TargetShift) -> pd.DataFrame:
    """The edit's Δlog p(target) beside its matched random draws.

    Columns ``edits`` (the spec; empty for the summary row), ``kind`` (``this edit``,
    ``random draw``, then ``random mean (std …)``) and ``delta`` (nats).
    """
    b = shift.random
    rows = [{"edits": shift.edits.spec(), "kind": "this edit", "delta": shift.delta}]
    rows += [
        {"edits": d.spec(), "kind": "random draw", "delta": x} for d, x in zip(b.draws, b.deltas)
    ]
    if b.deltas:
        std = "" if b.std != b.std else f" (std {b.std:.4f})"
        rows.append({"edits": "", "kind": f"random mean{std}", "delta": b.mean})
    return pd.DataFrame(rows, columns=["edits", "kind", "delta"])


def baseline_summary(shift: TargetShift) -> str:
    """One sentence: the edit against its random draws, the target's rank by decrease
    and the other tokens' median change."""
    b = shift.random
    if b.deltas:
        beyond = b.exceeded_by(shift.delta)
        versus = (
            f"{'more' if beyond else 'no more'} than every one of {len(b.deltas)} random "
            f"edits matched in kind, index and σ (mean {b.mean:+.3f} nats)"
        )
    else:
        versus = "with no matched random edit to compare (no other component of that kind)"
    return (
        f"The edit moves log p(target) by {shift.delta:+.3f} nats, {versus}. At the "
        f"prompt's last position the target's first token is the {shift.target_rank:,}th "
        f"most decreased of {shift.n_vocab:,} tokens; the others moved by a median "
        f"|Δ| of {shift.median_abs_delta:.3f} nats."
    )


def specificity_frame(shift: TargetShift, s: Specificity) -> pd.DataFrame:
    """The effect on the target against the effect on reference text, in nats.

    Rows (``measure``, ``value``): target Δlog p, reference KL, reference Δloss.
    """
    return pd.DataFrame(
        {
            "measure": ["target Δlog p", "reference KL", "reference Δloss"],
            "value": [shift.delta, s.kl, s.loss_change],
            "group": ["target", "reference", "reference"],
        }
    )


def specificity_chart(df: pd.DataFrame) -> alt.HConcatChart:
    """:func:`specificity_frame` as one small bar chart per measure, side by side, each on
    its own scale (a target change of nats next to a KL of millinats stays readable): a
    specific edit has a long target bar and short reference bars. Each bar is labelled
    with its value."""
    panels = []
    for name, group in zip(df["measure"], df["group"]):
        one = df[df["measure"] == name]
        v = float(one["value"].iloc[0])
        base = alt.Chart(one).encode(
            x=alt.X("measure:N", title=None, axis=alt.Axis(labels=False, ticks=False)),
            y=alt.Y(
                "value:Q",
                title="nats",
                scale=alt.Scale(domain=[min(0.0, v * 1.25), max(0.0, v * 1.25)] if v else [-1, 1]),
            ),
            tooltip=["measure", alt.Tooltip("value:Q", format=".4g")],
        )
        bar = base.mark_bar(size=40, color=CHOSEN if group == "target" else OTHER)
        text = base.mark_text(
            dy=-8 if v >= 0 else 8, baseline="bottom" if v >= 0 else "top"
        ).encode(text=alt.Text("value:Q", format=".3g"))
        panels.append((bar + text).properties(title=name, width=120, height=170))
    return alt.hconcat(*panels, title="Effect on the target vs on reference text (nats)")


def _ends(d: object) -> tuple[str, str]:
    top = " ".join(t for _, t, _ in d.top[:TOKENS_SHOWN])  # type: ignore[attr-defined]
    bottom = " ".join(t for _, t, _ in d.bottom[:TOKENS_SHOWN])  # type: ignore[attr-defined]
    return top, bottom


def comparison_frame(
    c: Comparison, first: int | None = None, keep: set[int] | None = None
) -> pd.DataFrame:
    """One row per original direction: its σ and both token ends, and its match after
    the edits (``after`` index or missing when removed, ``cosine`` signed: -1 means the
    recomputed SVD flipped the sign, in which case the ends swap), with the matched
    direction's σ and ends.

    With ``first``, only the first ``first`` directions and those in ``keep`` (the
    edited ones) are listed.
    """
    after = {d.index: d for d in c.after}
    rows = []
    for d, m in zip(c.before, c.matches):
        if first is not None and d.index >= first and d.index not in (keep or set()):
            continue
        top, bottom = _ends(d)
        row = {
            "index": d.index,
            "sigma": d.singular_value,
            "top": top,
            "bottom": bottom,
            "after": pd.NA if m.after_index is None else m.after_index,
            "sigma_after": m.s_after,
            "cosine": m.cosine,
            "top_after": "",
            "bottom_after": "",
            "status": "removed" if m.after_index is None else _status(m.s_before, m.s_after),
        }
        if m.after_index is not None and m.after_index in after:
            row["top_after"], row["bottom_after"] = _ends(after[m.after_index])
        rows.append(row)
    # The status first: the before/after table is wide and its token columns scroll.
    cols = ["index", "sigma", "status", "after", "sigma_after", "cosine",
            "top", "bottom", "top_after", "bottom_after"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    if len(df):
        df["after"] = df["after"].astype("Int64")
    return df


def _status(s0: float, s1: float) -> str:
    r = s1 / s0 if s0 else 1.0
    return "kept" if abs(r - 1) < 1e-3 else f"×{r:.3g}"
