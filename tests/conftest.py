"""Shared fixtures: seeded RNG, offline hub, tiny checkpoints of each architecture."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from tests.tiny_models import ARCHS, save_checkpoint

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _few_null_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Search significance with 20 random queries, not 100: each is a ranking of the
    whole index (tests of the null itself pass their own ``draws``).
    """
    import core.search.null

    monkeypatch.setattr(core.search.null, "N_DRAWS", 20)


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny random-init checkpoint directory per architecture."""
    root = tmp_path_factory.mktemp("ckpt")
    return {arch: save_checkpoint(arch, root / arch) for arch in ARCHS}
