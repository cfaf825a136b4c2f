"""Experiments in the dashboard: each run is a background job (:class:`ProgressJob`) in
one of :mod:`dashboard.limits`'s job slots, shared by every session that asks for the
same inputs and kept once done.

A run is minutes of forward passes on a CPU (the page's default truncation of
SmolLM2-135M is every OV layer, 30 layers of 13 variants each; three of those layers,
at 14 variants then, took 41-47 s on 2 cores). On its own thread it leaves the page
free: the page draws its progress and the visitor can read other pages meanwhile. The
inputs of each kind of run last started on a model are remembered (:func:`latest`), so
a reloaded page (a new session) finds its run again, still going or done.
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


class _Latest:
    """The inputs of the run of each name last started on one model."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.args: dict[str, tuple[Any, ...]] = {}


@st.cache_resource(show_spinner=False, max_entries=32)
def _latest(model: str, processing: str, cache_dir: str) -> _Latest:
    return _Latest()


def _latest_of(sel: state.Selection) -> _Latest:
    return _latest(sel.model, sel.processing, str(config.cache_dir()))


def latest(name: str, sel: state.Selection) -> tuple[Any, ...] | None:
    """The inputs of the ``name`` run last started on ``sel``'s model, by any session
    (what a new session shows before its own first click); ``None`` when none was."""
    held = _latest_of(sel)
    with held.lock:
        return held.args.get(name)


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
    starts again), and remember it as the latest ``name`` run on the model; ``False``
    when every job slot is busy."""
    holder = _of(name, sel, build, args)
    with holder.lock:
        if holder.job is None or holder.job.error is not None:
            if not limits.try_enter():
                return False
            a = get_analysis(sel.model, sel.processing)
            holder.job = Run(lambda progress: build(a, *args, progress=progress), limits.leave)
            holder.job.start()
    held = _latest_of(sel)
    with held.lock:
        held.args[name] = args
    return True
