"""One analysis per (architecture, processing) of the tiny checkpoints, shared by the
edit tests; every test reads them only (``test_hf`` checks nothing writes them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.analysis import Analysis, open_analysis
from core.settings import Settings


def open_checkpoint(path: Path, processing: str, cache: Path) -> Analysis:
    """An analysis of the checkpoint at ``path`` on the CPU."""
    return open_analysis(
        Settings(model=str(path), processing=processing, device="cpu", cache_dir=cache)
    )


@pytest.fixture(scope="session")
def analyses(checkpoints, tmp_path_factory):
    """``get(arch, processing="post")``: one analysis per pair, opened on first use."""
    cache = tmp_path_factory.mktemp("edit-cache")
    made: dict[tuple[str, str], Analysis] = {}

    def get(arch: str, processing: str = "post") -> Analysis:
        if (arch, processing) not in made:
            made[arch, processing] = open_checkpoint(checkpoints[arch], processing, cache)
        return made[arch, processing]

    return get
