"""One analysis per (architecture, processing) of the tiny checkpoints, and the plain
Hugging Face model of each checkpoint loaded on its own (the tests' reference), for the
lens tests."""

from __future__ import annotations

from typing import Any

import pytest

from core.analysis import Analysis, open_analysis
from core.settings import Settings


@pytest.fixture(scope="session")
def lens_analyses(checkpoints, tmp_path_factory):
    """``get(arch, processing="raw")``: one analysis per pair, opened on first use."""
    cache = tmp_path_factory.mktemp("lens-cache")
    made: dict[tuple[str, str], Analysis] = {}

    def get(arch: str, processing: str = "raw") -> Analysis:
        if (arch, processing) not in made:
            made[arch, processing] = open_analysis(
                Settings(
                    model=str(checkpoints[arch]),
                    processing=processing,
                    device="cpu",
                    cache_dir=cache,
                )
            )
        return made[arch, processing]

    return get


@pytest.fixture(scope="session")
def hf_models(checkpoints):
    """``get(arch)``: the checkpoint loaded by ``transformers`` alone, in eval mode."""
    from transformers import AutoModelForCausalLM

    made: dict[str, Any] = {}

    def get(arch: str) -> Any:
        if arch not in made:
            made[arch] = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
        return made[arch]

    return get
