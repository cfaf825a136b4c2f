"""The search index as a part of its analysis's cache entry.

Building an index costs a float64 pass over ``W_U`` and two ``d_model x d_model``
eigendecompositions (the query operators), a ``d_model x d_model`` product per direction
(the logit stds) and a pass over every direction (the stacked rows and their table):
about a second on SmolLM2-135M, more than the rest of a cached answer. So the first build
on a settled entry writes all of it as one part (safetensors + JSON,
:func:`core.cache.parts.save_part`); later builds read it back, and read no kind's file.
A process answering one question (an analysis whose kinds are read lazily: the CLI)
maps the part instead of reading it (:mod:`core.cache.reading`), so a query reads the
pages it touches.

The part records what it was computed from (the ridge, the dtype, each kind's number of
components and of projected directions, a format version); the entry's weights hash and
settings are checked by the store, and rewriting the entry drops the part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from core.analysis import settings_key
from core.cache import parts as cache_parts
from core.cache.reading import LazyTable
from core.cache.store import KindResult
from core.errors import CacheError
from core.search.embed import QueryEmbedder
from core.search.parts import PartStore

#: Bumped when the part's content changes (2: the row table is stored too).
PART_VERSION = 2
#: The query operators' tensors.
OPS = ("mean_u", "pinv_op", "ridge_op", "gc_root")
#: The row table's tensors (:class:`core.search.index.SearchIndex` fields).
ROWS = ("kind_of", "layer", "head", "index", "component", "singular_value", "degenerate")
#: Each row's statistics and the stacked rows.
STATS = ("logit_std", "tau_top", "tau_bottom", "vectors")


@dataclass(frozen=True)
class IndexTables:
    """Everything :func:`core.search.index.build_index` computes, as stored.

    Attributes:
        rows: the row table, ``ROWS`` -> ``[n]`` each.
        stats: ``STATS`` -> ``[n]`` each (``vectors``: ``[n, d_model]``).
        spans: ``kind -> (start, stop)``.
        embedder: the query operators.
    """

    rows: dict[str, Tensor]
    stats: dict[str, Tensor]
    spans: dict[str, tuple[int, int]]
    embedder: QueryEmbedder


def one_question(analysis: Any) -> bool:
    """Whether ``analysis`` reads its kinds lazily: a process answering one question,
    which maps cache files rather than reading them.
    """
    return isinstance(analysis.svd.kinds, LazyTable)


# ``held`` is typed Any here and below: a runtime type checker (the tests' beartype)
# samples an item of a subscripted Mapping, which reads a lazily read kind's file.
def _counts(held: Any, kind: str) -> list[int]:
    """``[components, n_projected]`` of a kind: from the manifest when the kind is not
    read yet (no file read), else from its value.
    """
    rec = held.record(kind) if isinstance(held, LazyTable) else None
    if rec is not None:
        return [len(rec["components"]), int(rec["n_projected"])]
    res = held[kind]
    return [len(res.decomposition.components), res.n_projected]


def describe(
    analysis: Any, kinds: Sequence[str], ridge: float, dtype: torch.dtype
) -> tuple[str, dict[str, Any]]:
    """The part's name for these kinds, and what it must have been computed from."""
    held = analysis.svd.kinds
    extra = {
        "version": PART_VERSION,
        "ridge": ridge,
        "dtype": str(dtype),
        "kinds": {k: _counts(held, k) for k in kinds},
    }
    return "search-" + "-".join(kinds), extra


def load(
    analysis: Any, kinds: Sequence[str], ridge: float, dtype: torch.dtype
) -> IndexTables | None:
    """The tables of an earlier build on this entry, or ``None`` (none, or computed from
    something else, or not readable).
    """
    s = analysis.settings
    name, extra = describe(analysis, kinds, ridge, dtype)
    try:
        stored, t = cache_parts.load_part(
            s.cache_dir,
            analysis.meta,
            s.processing,
            settings_key(s),
            name,
            mapped=one_question(analysis),
        )
        if {k: v for k, v in stored.items() if k != "spans"} != extra:
            return None
        spans = {k: (int(a), int(b)) for k, (a, b) in stored["spans"].items()}
        n = max(b for _, b in spans.values())
        d = analysis.meta.d_model
        if list(spans) != list(kinds) or t["vectors"].dtype != dtype:
            return None
        if t["vectors"].shape != (n, d) or any(t[k].shape != (n,) for k in ROWS + STATS[:3]):
            return None
        ops = {k: t[k].to(analysis.W_U.dtype) for k in OPS}
        embedder = QueryEmbedder(W_U=analysis.W_U, W_E=analysis.W_E, ridge=ridge, **ops)
        rows = {k: t[k] for k in ROWS}
        rows["degenerate"] = rows["degenerate"].bool()
        return IndexTables(rows, {k: t[k] for k in STATS}, spans, embedder)
    except (CacheError, KeyError, ValueError, TypeError, OSError):
        return None


def save(
    analysis: Any, kinds: Sequence[str], ridge: float, dtype: torch.dtype, tables: IndexTables
) -> None:
    """Write the tables as the entry's part (only a settled entry's: during a fill the
    thresholds still read Gaussian values; silently not where the cache is read-only).
    """
    if not analysis.persist or analysis.filling:
        return
    s = analysis.settings
    name, extra = describe(analysis, kinds, ridge, dtype)
    extra["spans"] = {k: list(v) for k, v in tables.spans.items()}
    tensors = {k: getattr(tables.embedder, k) for k in OPS}
    tensors.update(tables.stats)
    tensors.update(tables.rows)
    tensors["degenerate"] = tables.rows["degenerate"].to(torch.uint8)
    with contextlib.suppress(OSError, CacheError):
        cache_parts.save_part(
            s.cache_dir, analysis.meta, s.processing, settings_key(s), name, tensors, extra
        )


def part_store(analysis: Any, kinds: Sequence[str], ridge: float, dtype: torch.dtype) -> PartStore:
    """Where the index keeps its small derived parts (the significance nulls)."""
    s = analysis.settings
    _, base = describe(analysis, kinds, ridge, dtype)
    return PartStore(
        cache_dir=s.cache_dir,
        meta=analysis.meta,
        processing=s.processing,
        key=settings_key(s),
        base=base,
        writable=bool(analysis.persist and not analysis.filling),
    )


if TYPE_CHECKING:
    _Kinds = Mapping[str, KindResult]
else:
    # Unsubscripted at run time, as core.cache.reading.LazyTable: a runtime type checker
    # samples an item of a subscripted mapping.
    _Kinds = Mapping


class KindsView(_Kinds):
    """Some kinds of an analysis's table, each looked up when first used: an index read
    from its part reads no kind's file until a query needs its cached ends or vectors.
    """

    def __init__(self, held: Any, kinds: Sequence[str]) -> None:
        self._held, self._kinds = held, tuple(kinds)

    def __getitem__(self, kind: str) -> KindResult:
        if kind not in self._kinds:
            raise KeyError(kind)
        return self._held[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)
