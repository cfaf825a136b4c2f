"""Which directions the stored labels call interpretable, for the knockout experiment.

Verdicts come from the label store (:mod:`core.label.store`): the chosen labeller's
(``offline``, ``llm`` for any LLM's, or ``manual``), a manual label of the same direction
and end overriding it, the newest when several LLMs spoke. Labels are per end (top and
bottom); a direction is *interpretable* when either of its ends is, uninterpretable when
every end with a verdict is not. :func:`label_missing` runs the offline labeller on both
ends of the components that have no verdict yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.analysis import Analysis
from core.label.store import MANUAL, LabelStore, reading
from core.progress import Progress, quiet
from core.query import check_component, kind_result
from core.settings import HEAD_KINDS

#: ``(kind, layer, head, index)``: one direction, as labels and edits name it.
Key = tuple[str, int, int | None, int]
#: Where verdicts come from (``llm``: any LLM labeller's).
LABEL_SOURCES: tuple[str, ...] = ("offline", "llm", "manual")


def components(
    analysis: Analysis, kinds: Sequence[str], layers: Sequence[int]
) -> list[tuple[str, int, int | None]]:
    """Every ``(kind, layer, head)`` of the chosen matrices (OV: each head)."""
    meta = analysis.meta
    out: list[tuple[str, int, int | None]] = []
    for kind in kinds:
        heads: list[int | None] = list(range(meta.n_heads)) if kind in HEAD_KINDS else [None]
        for layer in layers:
            for head in heads:
                check_component(meta, kind, layer, head, meta.gated)
                out.append((kind, layer, head))
        kind_result(analysis, kind)  # a kind the entry lacks is one sentence
    return out


def _source_matches(labeller: str, source: str) -> bool:
    return labeller == source or (source == "llm" and labeller.startswith("llm"))


def stored_verdicts(
    analysis: Analysis, kinds: Sequence[str], layers: Sequence[int], source: str = "offline"
) -> dict[Key, bool]:
    """The stored yes/no verdict on each direction of ``kinds`` in ``layers``: per end,
    ``source``'s (:data:`LABEL_SOURCES`), a manual label of the same end winning, and
    the newest when several labellers of the source spoke; then one bool per direction,
    true when either end is interpretable (false when every decided end is not).
    Controls are left out.
    """
    meta, wanted = analysis.meta, set(layers)
    best: dict[tuple[Key, str], tuple[int, float, bool]] = {}
    with LabelStore.in_cache(analysis.settings.cache_dir) as labels:
        for kind in kinds:
            for r in labels.query(
                meta.name, meta.weights_hash, kind, control=False, **reading(analysis.settings)
            ):
                if r.layer not in wanted or r.interpretable is None:
                    continue
                if r.labeller == MANUAL:
                    rank = 2
                elif _source_matches(r.labeller, source):
                    rank = 1
                else:
                    continue
                key = ((kind, r.layer, r.head, r.index), r.end)
                if key not in best or best[key][:2] < (rank, r.timestamp):
                    best[key] = (rank, r.timestamp, r.interpretable)
    out: dict[Key, bool] = {}
    for (direction, _), (_, _, yes) in best.items():
        out[direction] = out.get(direction, False) or yes
    return out


def label_missing(
    analysis: Analysis,
    kinds: Sequence[str],
    layers: Sequence[int],
    n: int = 30,
    progress: Progress = quiet,
) -> int:
    """Label offline (and store) both ends of the first ``n`` directions of every chosen
    component that has no offline or manual verdict yet; returns how many verdicts (two
    per direction) were stored.
    """
    from core.label.store import ENDS
    from core.label.sweep import label_offline, offline_labeller, store_labels, token_sets

    have = {k[:3] for k in stored_verdicts(analysis, kinds, layers, "offline")}
    todo = sorted(
        {(k, la) for k, la, h in components(analysis, kinds, layers) if (k, la, h) not in have},
        key=lambda x: (kinds.index(x[0]), x[1]),
    )
    labeller = None
    count = 0
    for j, (kind, layer) in enumerate(todo):
        progress(j / len(todo), f"labelling {kind} of layer {layer} offline")
        labeller = labeller or offline_labeller(analysis)
        for end in ENDS:
            items = [
                it
                for it in token_sets(analysis, kind, [layer], n, end=end)
                if (kind, *it[:2]) not in have
            ]
            count += store_labels(analysis, label_offline(labeller, items, kind, end=end))
    if todo:
        progress(1.0, f"labelled {count} directions offline")
    return count
