"""Work that runs on its own thread while pages keep answering: the background fill of
the projections (:mod:`core.cache.fill`), a dataset-examples build
(:mod:`core.activations.job`), the search nulls' warm-up (:mod:`core.search.warm`) and
a sweep's plan (:class:`core.edit.ablate.SweepPlanJob`).

Each is started once, is waited on or polled through :attr:`BackgroundJob.done`, and
keeps the exception that stopped it in :attr:`BackgroundJob.error` rather than raising
it: nobody joins these threads.
"""

from __future__ import annotations

import logging
import threading
from typing import TypeVar

logger = logging.getLogger(__name__)


_Job = TypeVar("_Job", bound="BackgroundJob")


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
