"""A bound on the expensive actions visitors can start at once: labeller sweeps, edit
measurements and sweeps, label exports. Sessions are threads of one server process, so
one semaphore here bounds them all; when every slot is taken the page says so in one
sentence instead of queueing more work on the CPU.

``$SVDLENS_MAX_JOBS`` sets the slots (default 2), read once when the server starts.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

T = TypeVar("T")


def _slots() -> int:
    try:
        return max(1, int(os.environ.get("SVDLENS_MAX_JOBS", "").strip() or 2))
    except ValueError:
        return 2


SLOTS = _slots()
#: How long a page waits for a slot before it says the server is busy: long enough
#: that a job about to finish frees one, short enough to read as an answer.
WAIT_S = 3.0
_JOBS = threading.BoundedSemaphore(SLOTS)


def enter(what: str) -> None:
    """Take a job slot for ``what`` (e.g. "the offline labeller"), or show why not and
    stop the page. Pair with :func:`leave` in a ``finally``."""
    if not _JOBS.acquire(timeout=WAIT_S):
        st.warning(
            f"The server is already running {SLOTS} expensive job(s) for other visitors, "
            f"so {what} has to wait; try again in a minute."
        )
        st.stop()


def try_enter() -> bool:
    """Take a job slot without waiting or drawing anything (for work handed to a
    background thread, which gives it back with :func:`leave`); whether one was free."""
    return _JOBS.acquire(blocking=False)


def leave() -> None:
    """Give back the slot :func:`enter` took."""
    _JOBS.release()


def queued(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` made to wait for a slot: for work Streamlit runs off the page, such as a
    download button's deferred data, where no message can be shown."""

    def run() -> T:
        with _JOBS:
            return fn()

    return run
