"""Work that runs on its own thread while pages keep answering: the background fill of
the projections (:mod:`core.cache.fill`), a dataset-examples build
(:mod:`core.activations.job`), the search nulls' warm-up (:mod:`core.search.warm`), a
sweep's plan (:class:`core.edit.ablate.SweepPlanJob`) and, through
:class:`ProgressJob`, the dashboard's experiments.

Each is started once, is waited on or polled through :attr:`BackgroundJob.done`, and
keeps the exception that stopped it in :attr:`BackgroundJob.error` rather than raising
it: nobody joins these threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from core.progress import Progress

logger = logging.getLogger(__name__)


_Job = TypeVar("_Job", bound="BackgroundJob")
_T = TypeVar("_T")


class BackgroundJob:
    """One piece of work (:meth:`_work`) on its own thread.

    Subclasses set :attr:`thread_name`, :attr:`daemon` (whether an exiting interpreter
    leaves the thread behind rather than waiting for it) and :attr:`failure` (the log
    line's start when the work raises), and call ``super().__init__()``.

    Attributes:
        done: set when the work has returned or raised.
        error: the exception that stopped it, if any.
    """

    thread_name = "svd-lens-job"
    daemon = True
    failure = "background work failed"

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=self.daemon)

    def start(self: _Job) -> _Job:
        """Start the thread; returns ``self``."""
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until done (or ``timeout`` seconds); whether it is done."""
        return self.done.wait(timeout)

    def _work(self) -> None:
        raise NotImplementedError

    def _after(self) -> None:
        """Run once :attr:`done` is set, whether the work returned or raised."""

    def _run(self) -> None:
        try:
            self._work()
        except Exception as exc:  # kept, not raised: nobody joins this thread
            logger.warning("%s: %s", self.failure, exc, exc_info=exc)
            self.error = exc
        finally:
            self.done.set()
            self._after()


class ProgressJob(BackgroundJob, Generic[_T]):
    """``work(progress)`` on its own (daemon) thread, its progress readable while it
    runs: what a page shows as a progress bar, so that minutes of work keep no page
    waiting. ``on_done`` runs when it has finished or failed.

    Attributes:
        fraction: progress so far, in ``[0, 1]``.
        message: the last progress message.
        result: what ``work`` returned, once it has.
    """

    thread_name = "svd-lens-task"
    failure = "a background task failed"

    def __init__(
        self, work: Callable[[Progress], _T], on_done: Callable[[], None] | None = None
    ) -> None:
        self._fn = work
        self._on_done = on_done
        self.fraction = 0.0
        self.message = "waiting to start"
        self.result: _T | None = None
        super().__init__()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(fraction), message

    def _work(self) -> None:
        self.result = self._fn(self._progress)

    def _after(self) -> None:
        if self._on_done is not None:
            self._on_done()

    def status(self) -> dict[str, Any]:
        """Progress as plain data."""
        return {
            "fraction": self.fraction,
            "message": self.message,
            "done": self.done.is_set(),
            "error": None if self.error is None else str(self.error),
        }
