"""Building examples in the background: a thread that reads the corpus and writes the
cache part while pages keep answering (the dashboard's button; see also
:mod:`core.cache.fill`, the same pattern for projections).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.activations.corpus import Corpus
from core.activations.examples import ExampleOptions, Examples
from core.activations.store import get_examples
from core.analysis import Analysis
from core.background import BackgroundJob


class ExampleJob(BackgroundJob):
    """One background build of an analysis's examples (a daemon thread; ``on_done`` runs
    when it has finished or failed).

    Attributes:
        fraction: progress so far, in ``[0, 1]``.
        message: the last progress message.
        done: set when the build has finished (or failed).
        result: the examples once built.
        error: the exception that stopped it, if any.
    """

    thread_name = "svd-lens-examples"
    failure = "building examples failed"

    def __init__(
        self,
        analysis: Analysis,
        corpus: Corpus,
        options: ExampleOptions,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._analysis = analysis
        self._corpus = corpus
        self._options = options
        self._on_done = on_done
        self.fraction = 0.0
        self.message = "waiting to start"
        self.result: Examples | None = None
        super().__init__()

    def _progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = float(fraction), message

    def _work(self) -> None:
        self.result = get_examples(self._analysis, self._corpus, self._options, self._progress)
        self._progress(1.0, "examples built")

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
