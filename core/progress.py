"""The progress callback every long stage accepts, and the one that draws nothing.

A stage calls ``progress(fraction, message)`` with ``fraction`` in ``[0, 1]``; the CLI
passes a tqdm bar, the dashboard a spinner, tests the default :func:`quiet`.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def quiet(fraction: float, message: str) -> None:
    """A progress callback that draws nothing."""
    del fraction, message
