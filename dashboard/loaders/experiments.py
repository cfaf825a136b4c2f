"""Experiments in the dashboard: each run is a background job (:class:`ProgressJob`) in
one of :mod:`dashboard.limits`'s job slots, shared by every session that asks for the
same inputs and kept once done.

A run is minutes of forward passes on a CPU (the page's default truncation of
SmolLM2-135M is every OV layer, 30 layers of 14 variants each; three of those layers
took 41-47 s on 2 cores). On its own thread it leaves the page free: the page draws its
progress and the visitor can read other pages meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st
from core.background import ProgressJob

from dashboard import config, limits, state
from dashboard.loaders import get_analysis

#: A run's job.
Run = ProgressJob[pd.DataFrame]


class _Holder:
    """One experiment's inputs: its job once started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job: Run | None = None


@st.cache_resource(show_spinner=False, max_entries=32)
def _holder(
    name: str, builder: str, model: str, processing: str, cache_dir: str, args: tuple[Any, ...]
) -> _Holder:
    return _Holder()


def _of(
    name: str, sel: state.Selection, build: Callable[..., Any], args: tuple[Any, ...]
) -> _Holder:
    key = f"{build.__module__}.{build.__qualname__}"
    return _holder(name, key, sel.model, sel.processing, str(config.cache_dir()), args)


def experiment(
    name: str, sel: state.Selection, build: Callable[..., Any], *args: Any
) -> Run | None:
    """The run of ``build(analysis, *args, progress=...)`` on ``sel``'s model: running,
    done or failed; ``None`` when none was started (or it is no longer kept)."""
    return _of(name, sel, build, args).job


def start_experiment(
    name: str, sel: state.Selection, build: Callable[..., Any], *args: Any
) -> bool:
    """Start that run in the background unless it is running or done (a failed one
    starts again); ``False`` when every job slot is busy."""
    holder = _of(name, sel, build, args)
    with holder.lock:
        if holder.job is not None and holder.job.error is None:
            return True
        if not limits.try_enter():
            return False
        a = get_analysis(sel.model, sel.processing)
        holder.job = Run(lambda progress: build(a, *args, progress=progress), limits.leave)
        holder.job.start()
    return True
