"""Display names of components, shared by the builders and the selection."""

from __future__ import annotations

from core.settings import KIND_NAMES


def component_label(kind: str, layer: int, head: int | None = None) -> str:
    """``L3 H5 OV``, ``L2 MLP in``, or ``Embedding`` (which has one component)."""
    name = KIND_NAMES.get(kind, kind)
    if kind == "embed":
        return name
    return f"L{layer}{'' if head is None else f' H{head}'} {name}"
