"""Edits from a semantic search: every OV/MLP direction that matches a query.

The search index (:func:`core.search.build_index`) is built once per analysis by the
caller (the CLI, or the dashboard's cached one) and only read here, so a query costs a
search, not a rebuild of every direction's index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from core.edit.rank_one import EDIT_KINDS, EditSet
from core.errors import SpecError
from core.search import SearchIndex, search
from core.search.engine import DEFAULT_THRESHOLD


def edits_from_hits(hits: Iterable[Any], scale: float = 0.0) -> EditSet:
    """Edits of every editable hit of a semantic search (``core.search.SearchHit`` or its
    JSON dict); QK and embedding hits are skipped (they cannot be edited).
    """
    rows = []
    for h in hits:
        get = h.get if isinstance(h, dict) else lambda k, h=h: getattr(h, k)
        if get("matrix") in EDIT_KINDS:
            rows.append((get("matrix"), get("layer"), get("head"), get("index")))
    return EditSet.from_components(rows, scale)


def search_edits(
    index: SearchIndex,
    query: str,
    threshold: float = DEFAULT_THRESHOLD,
    top: int | None = None,
    scale: float = 0.0,
    signs: Sequence[str] = ("positive", "antipodal"),
) -> EditSet:
    """Edits of every OV/MLP direction of ``index`` that matches ``query`` significantly
    (better than random queries of the same shape, :mod:`core.search.null`) with a
    |cosine| of at least ``threshold`` (across heads and layers; ``top`` caps the count,
    best first).

    ``index`` may hold other kinds too (the search page's does); only the editable ones
    are searched. ``signs`` keeps positive matches, antipodal ones (the query matches
    the bottom end), or both; removing a direction removes both of its ends either way.
    """
    kinds = tuple(k for k in index.kinds if k in EDIT_KINDS)
    if not kinds:
        raise SpecError(
            "This search index holds no OV or MLP directions; build it with "
            "core.search.build_index(analysis, EDIT_KINDS)."
        )
    res = search(
        index, query, threshold=threshold, top=top, kinds=kinds, k=1, significant_only=True
    )
    return edits_from_hits([h for h in res.hits if h.sign in signs], scale)
