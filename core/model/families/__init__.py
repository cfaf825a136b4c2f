"""Architecture families, one module each: what the code knows per architecture
(Hugging Face class and config names, where each weight lives, how it is stored).

The registry maps a checkpoint's ``config.model_type`` to its family. Everything else
reads weights through TransformerLens's architecture-independent names
(:mod:`core.model.weights`); only code that touches Hugging Face modules directly
(editing, the tests' references) needs a family.
"""

from __future__ import annotations

from typing import Any

from core.errors import CoreError, SpecError
from core.model.families import gpt2, llama, neox
from core.model.families.base import Family

#: Family name -> family.
FAMILIES: dict[str, Family] = {f.name: f for f in (gpt2.FAMILY, neox.FAMILY, llama.FAMILY)}

_BY_MODEL_TYPE: dict[str, Family] = {t: f for f in FAMILIES.values() for t in f.model_types}


def supported() -> str:
    """The families for messages: ``GPT-2, GPT-NeoX/Pythia or Llama-style``."""
    titles = [f.title for f in FAMILIES.values()]
    return ", ".join(titles[:-1]) + " or " + titles[-1]


def family_for(model_type: str, error: type[CoreError] = SpecError) -> Family:
    """The family of a ``config.model_type``; ``error`` (one sentence) if none knows it."""
    try:
        return _BY_MODEL_TYPE[model_type]
    except KeyError:
        known = ", ".join(sorted(_BY_MODEL_TYPE))
        what = f"model_type {model_type!r}" if model_type else "a checkpoint without a model_type"
        raise error(
            f"No architecture family knows the module layout of {what}; use a {supported()} "
            f"model (config.json model_type one of {known})."
        ) from None


def family_of(model: Any, error: type[CoreError] = SpecError) -> Family:
    """The family of a Hugging Face model (or its config)."""
    config = getattr(model, "config", model)
    return family_for(str(getattr(config, "model_type", "") or ""), error)


__all__ = ["FAMILIES", "Family", "family_for", "family_of", "supported"]
