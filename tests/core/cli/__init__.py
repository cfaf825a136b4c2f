"""Helpers shared by the CLI tests."""

import re

_PROGRESS = re.compile(r"^\[ *\d+\.\d s\] ")


def without_progress(err: str) -> str:
    """``err`` without the progress lines a command logs when stderr is not a terminal."""
    return "".join(line for line in err.splitlines(True) if not _PROGRESS.match(line))
