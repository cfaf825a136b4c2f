"""The background fill: project the directions :func:`~core.cache.build.build_first`
left out, kind by kind, while pages are already being answered.

Each kind's result is replaced in one assignment (``svd.kinds[kind] = filled``), so a
reader sees the first-pass result or the filled one, never a mix. Both answer every
query the same way: past the cached directions the sign rule is applied on demand
(:func:`core.query.directions`), which is what the fill writes. The search index reads
the filled ends' tails for its thresholds, so it is rebuilt once :attr:`Fill.generation`
moves (the dashboard keys its index on it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from torch import Tensor

from core.background import BackgroundJob
from core.cache.build import FILL_ORDER, fill_kind, is_filled
from core.cache.store import ModelSVD
from core.progress import Progress, quiet
from core.settings import Settings


class Fill(BackgroundJob):
    """One entry's background fill (a non-daemon thread: a command that started one
    exits after it has written the entry).

    Attributes:
        done: set when every kind is filled and ``on_done`` has run, or on an error.
        generation: kinds filled so far.
        total: kinds to fill.
        error: the exception that stopped it, if any (the entry is then not written;
            the next open builds it again).
    """

    thread_name = "svd-lens-fill"
    daemon = False
    failure = "background projection failed"

    def __init__(
        self,
        svd: ModelSVD,
        W_U: Tensor,
        settings: Settings,
        on_done: Callable[[ModelSVD], None],
        progress: Progress = quiet,
    ) -> None:
        self.svd = svd
        self._W_U = W_U
        self._settings = settings
        self._on_done = on_done
        self._progress = progress
        self.order = [k for k in FILL_ORDER if k in svd.kinds] + [
            k for k in svd.kinds if k not in FILL_ORDER
        ]
        self.total = len(self.order)
        self.generation = 0
        super().__init__()

    def _work(self) -> None:
        t0 = time.perf_counter()
        for i, kind in enumerate(self.order):
            self._progress(i / max(1, self.total), f"background: projecting {kind}")
            res = self.svd.kinds[kind]
            if not is_filled(res, self._settings):
                self.svd.kinds[kind] = fill_kind(res, self._W_U, self._settings)
            self.generation = i + 1
        self._on_done(self.svd)
        self._progress(
            1.0, f"background: every direction projected in {time.perf_counter() - t0:.1f} s"
        )
