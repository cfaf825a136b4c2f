"""One kind's cached table: a decomposition with its projected top and bottom tokens, and
its tensors as the cache files hold them (safetensors names and dtypes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from core.svd.decompose import Decomposition
from core.svd.project import TopTokens


@dataclass(frozen=True)
class KindResult:
    """A kind's decomposition with the cached token projection of its first directions.

    ``tops`` rows are component-major: row ``c * n_projected + i`` is direction ``i`` of
    component ``c``.
    """

    decomposition: Decomposition
    tops: TopTokens
    n_projected: int

    def __post_init__(self) -> None:
        c = len(self.decomposition.components)
        if self.tops.top_idx.shape[0] != c * self.n_projected:
            raise ValueError("tops must hold n_projected rows per component")


def decomposition_tensors(d: Decomposition) -> dict[str, torch.Tensor]:
    """The tensors of ``d`` as a cache file stores them (CPU, contiguous)."""
    t = {"S": d.S, "degenerate": d.degenerate.to(torch.uint8)}
    if d.U is not None:
        t["U"] = d.U
    if d.V is not None:
        t["V"] = d.V
    return {k: v.detach().cpu().contiguous() for k, v in t.items()}


def decomposition_from_tensors(
    kind: str, comps: list[list[Any]], t: dict[str, torch.Tensor], control: bool
) -> Decomposition:
    """The decomposition of ``kind`` from :func:`decomposition_tensors`' tensors ``t``
    and its manifest's component list.
    """
    return Decomposition(
        kind=kind,
        components=tuple((int(c[0]), None if c[1] is None else int(c[1])) for c in comps),
        S=t["S"],
        U=t.get("U"),
        V=t.get("V"),
        degenerate=t["degenerate"].bool(),
        control=control,
    )


def kind_tensors(res: KindResult) -> dict[str, torch.Tensor]:
    """The tensors of ``res`` as a cache file stores them (CPU, contiguous)."""
    tops = {
        "top_idx": res.tops.top_idx.to(torch.int32),
        "top_val": res.tops.top_val,
        "bottom_idx": res.tops.bottom_idx.to(torch.int32),
        "bottom_val": res.tops.bottom_val,
    }
    return decomposition_tensors(res.decomposition) | {
        k: v.detach().cpu().contiguous() for k, v in tops.items()
    }


def kind_from_tensors(
    kind: str, comps: list[list[Any]], n_projected: int, t: dict[str, torch.Tensor], control: bool
) -> KindResult:
    """The table of ``kind`` from its file's tensors ``t`` and its manifest's component
    list and ``n_projected``.
    """
    d = decomposition_from_tensors(kind, comps, t, control)
    # Token ids stay int32 as stored: widening every kind's ends to int64 was a third of
    # a cached answer's time (indexing takes int32 ids as they are).
    tops = TopTokens(
        top_idx=t["top_idx"],
        top_val=t["top_val"],
        bottom_idx=t["bottom_idx"],
        bottom_val=t["bottom_val"],
    )
    return KindResult(d, tops, n_projected)
