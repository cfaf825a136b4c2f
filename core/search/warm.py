"""Significance nulls computed before the queries that need them.

A query whose shape (concept count and frequency bins, :func:`core.search.null.null_for`)
no earlier query had waits for its null: 100 rankings of the whole index. On SmolLM2-135M
on 2 CPU cores that is 0.5-1 s, and it was the search's p95 (``BENCHMARKS.md``). The
shapes are few: five frequency bins, so 5 one-concept shapes, 15 of two and 35 of three.
:class:`NullWarmer` computes them on a background thread once an index is settled, the
likeliest first (:func:`common_shapes`), through the same :func:`null_for` a query calls,
so a query that comes first computes its own null and the warmer then finds it held, and
each null is saved beside the entry as a query's is.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence

from core.background import BackgroundJob
from core.search.embed import DEFAULT_METHOD
from core.search.engine import DEFAULT_THRESHOLD
from core.search.index import SearchIndex, check_kinds, default_kinds
from core.search.null import ZIPF_EDGES, index_pool, null_for

#: Concept counts warmed; a query of more concepts computes its null when it is typed.
MAX_CONCEPTS = 3

#: A query shape: the number of concepts and their sorted frequency bins (``None``: the
#: draw is uniform, without ``wordfreq``).
Shape = tuple[int, tuple[int, ...] | None]


def common_shapes(index: SearchIndex, max_concepts: int = MAX_CONCEPTS) -> list[Shape]:
    """Every query shape of 1 to ``max_concepts`` concepts, fewer concepts first, and
    within a count the likeliest first: the chance that concepts drawn from the model's
    whole words (:func:`core.search.null.word_pool`) fall in those bins.

    Empty when the vocabulary has no word to draw random queries from.
    """
    pool = index_pool(index)
    if not pool.ids:
        return []
    if pool.by_bin is None:
        return [(n, None) for n in range(1, max_concepts + 1)]
    share = {b: len(pool.by_bin.get(b, ())) / len(pool.ids) for b in range(len(ZIPF_EDGES) + 1)}
    out: list[Shape] = []
    for n in range(1, max_concepts + 1):
        shapes = list(itertools.combinations_with_replacement(sorted(share), n))

        def chance(bins: tuple[int, ...], n: int = n) -> float:
            counts = Counter(bins)
            ways = math.factorial(n) / math.prod(math.factorial(c) for c in counts.values())
            return ways * math.prod(share[b] ** c for b, c in counts.items())

        out += [(n, bins) for bins in sorted(shapes, key=lambda b: (-chance(b), b))]
    return out


def warm_nulls(
    index: SearchIndex,
    method: str = DEFAULT_METHOD,
    kinds: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_concepts: int = MAX_CONCEPTS,
    stop: Callable[[], bool] | None = None,
    on_null: Callable[[int, int], None] | None = None,
) -> int:
    """Compute (or read) the null of every :func:`common_shapes` shape for one method,
    set of kinds (default: :func:`default_kinds`) and threshold, until ``stop()`` is true.
    ``on_null(done, total)`` is called after each. Returns how many shapes are held.
    """
    # In index order, as a query's kinds are (check_kinds), so the nulls' keys match.
    kinds = default_kinds(index) if kinds is None else check_kinds(index, kinds)
    shapes = common_shapes(index, max_concepts)
    done = 0
    for n, bins in shapes:
        if stop is not None and stop():
            break
        null_for(index, n, method, kinds, threshold, bins=bins)
        done += 1
        if on_null is not None:
            on_null(done, len(shapes))
    return done


class NullWarmer(BackgroundJob):
    """:func:`warm_nulls` on a background thread, which stops after the null it is
    computing once :meth:`stop` is called or the main thread has ended (so a server or
    script that exits waits for one null at most; a daemon thread killed inside torch's
    kernels aborted the interpreter).

    Attributes:
        done: set when every shape is held, when stopped, or on an error.
        held: shapes held so far; ``total``: shapes to warm (known once started).
        error: the exception that stopped it, if any (queries then compute their own).
    """

    thread_name = "svd-lens-nulls"
    daemon = False
    failure = "warming the search nulls stopped"

    def __init__(
        self,
        index: SearchIndex,
        method: str = DEFAULT_METHOD,
        kinds: Sequence[str] | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        max_concepts: int = MAX_CONCEPTS,
    ) -> None:
        self._args = (index, method, kinds, threshold, max_concepts)
        self._stop = threading.Event()
        self.held = 0
        self.total: int | None = None
        super().__init__()

    def stop(self) -> None:
        """Ask the thread to stop after the null it is computing."""
        self._stop.set()

    def _stopping(self) -> bool:
        return self._stop.is_set() or not threading.main_thread().is_alive()

    def _count(self, held: int, total: int) -> None:
        self.held, self.total = held, total

    def _work(self) -> None:
        # Lowest CPU priority for this thread and the worker threads torch starts for it
        # (Linux threads inherit it): a query typed meanwhile gets the cores first.
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        warm_nulls(*self._args, stop=self._stopping, on_null=self._count)
