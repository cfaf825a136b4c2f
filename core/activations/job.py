"""Building examples in the background: a thread that reads the corpus and writes the
cache part while pages keep answering (the dashboard's button; see also
:mod:`core.cache.fill`, the same pattern for projections).
"""

from __future__ import annotations

from collections.abc import Callable

from core.activations.corpus import Corpus
from core.activations.examples import ExampleOptions, Examples
from core.activations.store import get_examples
from core.analysis import Analysis
from core.background import ProgressJob
from core.progress import Progress


class ExampleJob(ProgressJob[Examples]):
    """One background build of an analysis's examples (a daemon thread; ``on_done`` runs
    when it has finished or failed; progress as :class:`~core.background.ProgressJob`).
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
        def build(progress: Progress) -> Examples:
            out = get_examples(analysis, corpus, options, progress)
            assert out is not None  # built when missing
            progress(1.0, "examples built")
            return out

        super().__init__(build, on_done)
