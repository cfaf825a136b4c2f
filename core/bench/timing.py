"""Timing helpers of the benchmark: wall and CPU seconds, medians, peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def sync(device: str) -> None:
    """Wait for queued GPU work, so a timer stops when the work does."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` and its value."""
    wall, _, out = clocked(fn, device)
    return wall, out


def clocked(fn: Callable[[], Any], device: str) -> tuple[float, float, Any]:
    """Wall seconds, CPU seconds of this process (all threads), and ``fn()``.

    On a shared machine the CPU time is the steadier figure: other processes stretch
    the wall clock but not the work this process does (with ``--threads 1`` it is the
    wall time one idle core would take).
    """
    sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def median(xs: list[float]) -> float:
    """The median of ``xs``."""
    return float(statistics.median(xs))


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank)."""
    s = sorted(xs)
    return float(s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))])


def put(out: dict[str, Any], name: str, runs: list[tuple[float, float]], scale: float = 1.0):
    """Median wall (``name_s``) and CPU (``name_cpu_s``) seconds of ``runs``, scaled."""
    out[f"{name}_s"] = median([w for w, _ in runs]) * scale
    out[f"{name}_cpu_s"] = median([c for _, c in runs]) * scale


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
