"""Which directions the stored labels call interpretable, for the knockout experiment.

Verdicts come from the label store (:mod:`core.label.store`): the chosen labeller's
(``offline``, ``llm`` for any LLM's, or ``manual``), a manual label of the same direction
overriding it, the newest when several LLMs spoke. :func:`label_missing` runs the offline
labeller on the components that have no verdict yet.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.analysis import Analysis
from core.label.store import MANUAL, LabelStore
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
    """The stored yes/no verdicts on directions of ``kinds`` in ``layers``: ``source``'s
    (:data:`LABEL_SOURCES`), a manual label of the same direction winning, and the
    newest when several labellers of the source spoke. Controls are left out.
    """
    meta, wanted = analysis.meta, set(layers)
    best: dict[Key, tuple[int, float, bool]] = {}
    with LabelStore.in_cache(analysis.settings.cache_dir) as labels:
        for kind in kinds:
            for r in labels.query(meta.name, meta.weights_hash, kind, control=False):
                if r.layer not in wanted or r.interpretable is None:
                    continue
                if r.labeller == MANUAL:
                    rank = 2
                elif _source_matches(r.labeller, source):
                    rank = 1
                else:
                    continue
                key: Key = (kind, r.layer, r.head, r.index)
                if key not in best or best[key][:2] < (rank, r.timestamp):
                    best[key] = (rank, r.timestamp, r.interpretable)
    return {k: v[2] for k, v in best.items()}


def label_missing(
    analysis: Analysis,
    kinds: Sequence[str],
    layers: Sequence[int],
    n: int = 30,
    progress: Progress = quiet,
) -> int:
    """Label offline (and store) the first ``n`` directions of every chosen component
    that has no offline or manual verdict yet; returns how many were labelled.
    """
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
        items = [it for it in token_sets(analysis, kind, [layer], n) if (kind, *it[:2]) not in have]
        labeller = labeller or offline_labeller(analysis)
        count += store_labels(analysis, label_offline(labeller, items, kind))
    if todo:
        progress(1.0, f"labelled {count} directions offline")
    return count
