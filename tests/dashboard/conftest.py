"""Fixtures for the dashboard tests: a tiny GPT-2 checkpoint the app is pointed at.

The app reads SVDLENS_DEFAULT_MODEL / SVDLENS_MODELS_DIR / SVDLENS_CACHE_DIR (only in
``dashboard/``); the tests set them to a temporary checkpoint and cache so they never
depend on the embedded demo model or the repository's cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.tiny_models import make_hf_model, make_tokenizer, save_checkpoint

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "dashboard" / "app.py")


@pytest.fixture(scope="session")
def dash_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/models/tiny-gpt2`` (a checkpoint) and ``<tmp>/cache``."""
    root = tmp_path_factory.mktemp("dash")
    save_checkpoint("gpt2", root / "models" / "tiny-gpt2")
    (root / "cache").mkdir()
    return root


@pytest.fixture(scope="session")
def dash_env(dash_root: Path) -> Iterator[dict[str, str]]:
    """Point the dashboard at the tiny checkpoint and a temporary cache (whole session)."""
    env = {
        "SVDLENS_DEFAULT_MODEL": str(dash_root / "models" / "tiny-gpt2"),
        "SVDLENS_MODELS_DIR": str(dash_root / "models"),
        "SVDLENS_CACHE_DIR": str(dash_root / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def analysis(dash_env: dict[str, str]) -> Any:
    """The tiny model's Analysis (post processing), with its cache entry written."""
    from core.analysis import open_analysis
    from core.settings import Settings

    return open_analysis(
        Settings(
            model=dash_env["SVDLENS_DEFAULT_MODEL"],
            cache_dir=Path(dash_env["SVDLENS_CACHE_DIR"]),
            device="cpu",
        )
    )


def save_series(root: Path, n: int = 3) -> list[Path]:
    """A training-like series of the dashboard's tiny GPT-2: noise shrinking to zero, so
    the last checkpoint is the model itself and earlier ones drift from it."""
    tok = make_tokenizer()
    out = []
    for i in range(n):
        model = make_hf_model("gpt2", seed=0)
        g = torch.Generator().manual_seed(100 + i)
        scale = 0.5 * (1 - i / (n - 1))
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 2:
                    p.add_(scale * p.std() * torch.randn(p.shape, generator=g))
        d = root / f"step-{2**i:04d}"
        model.save_pretrained(d)
        tok.save_pretrained(d)
        out.append(d)
    return out


@pytest.fixture(scope="session")
def series_dir(dash_root: Path) -> Path:
    folder = dash_root / "models" / "series-gpt2"
    if not folder.exists():
        save_series(folder)
    return folder
