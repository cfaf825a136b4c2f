"""Dataset examples in the dashboard: the shipped reference corpus, one shared holder per
model (read from the cache once built), and the background build in a job slot.
"""

from __future__ import annotations

import threading

import streamlit as st
from core.activations import Corpus, ExampleJob, ExampleOptions, Examples, get_examples, load_corpus

from dashboard import config, limits, state
from dashboard.loaders import get_analysis


class _Examples:
    """One model's dataset examples (for one token budget): loaded once built, and the
    background build, if one was started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: Examples | None = None
        self.job: ExampleJob | None = None


@st.cache_resource(show_spinner=False, max_entries=1)
def reference_corpus() -> Corpus:
    """The shipped reference corpus (read once per server)."""
    return load_corpus()


@st.cache_resource(show_spinner=False, max_entries=8)
def _examples_slot(model: str, processing: str, cache_dir: str, tokens: int) -> _Examples:
    return _Examples()


def _example_options() -> ExampleOptions:
    return ExampleOptions(tokens=config.example_tokens())


def examples_slot(sel: state.Selection) -> _Examples:
    """The shared examples holder of ``sel``'s model, read from the cache when built."""
    slot = _examples_slot(
        sel.model, sel.processing, str(config.cache_dir()), config.example_tokens()
    )
    if slot.value is None:
        a = get_analysis(sel.model, sel.processing)
        with slot.lock:
            if slot.value is None:
                with st.spinner("Reading the dataset examples…"):
                    slot.value = get_examples(
                        a, reference_corpus(), _example_options(), build=False
                    )
    return slot


def start_examples(sel: state.Selection) -> bool:
    """Start building ``sel``'s model's examples in the background (one build per model,
    in one of :mod:`dashboard.limits`'s job slots); ``False`` when every slot is busy."""
    slot = examples_slot(sel)
    with slot.lock:
        if slot.job is not None and not slot.job.done.is_set():
            return True
        if not limits.try_enter():
            return False
        a = get_analysis(sel.model, sel.processing)

        def done() -> None:
            limits.leave()
            if job.result is not None:
                slot.value = job.result

        job = ExampleJob(a, reference_corpus(), _example_options(), done)
        slot.job = job.start()
    return True
