"""The lens tests share the activation tests' analyses of the tiny checkpoints, and load
each checkpoint's plain Hugging Face model on its own (the tests' reference)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.activations.conftest import analyses  # noqa: F401  (a fixture)


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
