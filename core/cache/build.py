"""Building a cache entry: decompose every kind and project its first directions.

:func:`build_svd` makes the real decompositions a precompute writes;
:func:`build_controls` makes the random Gaussian controls, which only the spectra,
the grid's control toggle and the statistics read, so they are built on first use
(:func:`core.analysis.controls`) unless a precompute asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import Tensor

from core.progress import Progress, quiet
from core.svd.decompose import Decomposition, control_weights, decompose_control, decompose_kind
from core.svd.project import TopTokens, orient
from core.settings import Settings
from core.cache.store import KindResult, ModelSVD
from core.model.weights import ModelWeights




def build_svd(weights: ModelWeights, settings: Settings, progress: Progress = quiet) -> ModelSVD:
    """Decompose and project every kind of ``weights`` (the controls are
    :func:`build_controls`'s).

    Runs on ``settings.torch_device()``; results come back on the CPU. Each kind's
    ``tops`` hold the first ``settings.n_project`` directions of every component.
    """
    device = settings.torch_device()
    kinds = [k for k in settings.kinds if k in weights.kinds()]
    W_U = weights.W_U.to(device)
    on_device = _to_device(weights, device)
    out: dict[str, KindResult] = {}
    for i, kind in enumerate(kinds):
        progress(i / len(kinds), f"{kind}: SVD + projection")
        out[kind] = _result(decompose_kind(on_device, kind, settings.degeneracy_tol), W_U, settings)
    progress(1.0, "done")
    return ModelSVD(weights.meta, weights.processing, settings.k, out)


def build_controls(
    weights: ModelWeights, settings: Settings, progress: Progress = quiet
) -> dict[str, KindResult]:
    """The random Gaussian control of every kind in ``settings.kinds``: one matrix per
    layer of each kind's shape (head 0 stands for the heads), drawn from
    ``settings.seed``, decomposed and projected through the real ``W_U``."""
    device = settings.torch_device()
    kinds = [k for k in settings.kinds if k in weights.kinds()]
    W_U = weights.W_U.to(device)
    out: dict[str, KindResult] = {}
    ctrl: ModelWeights | None = None
    for i, kind in enumerate(kinds):
        progress(i / max(1, len(kinds)), f"control {kind}: SVD + projection")
        if kind == "embed":
            d = _decomp_to(
                decompose_control(weights, kind, settings.degeneracy_tol, settings.seed), device
            )
        else:
            # The random model is drawn once for every kind (decompose_control would
            # draw the whole model again per kind), then decomposed on the device.
            if ctrl is None:
                ctrl = _to_device(control_weights(weights, settings.seed), device)
            d = replace(decompose_kind(ctrl, kind, settings.degeneracy_tol), control=True)
        out[kind] = _result(d, W_U, settings)
    progress(1.0, "done")
    return out


def _result(d: Decomposition, W_U: Tensor, settings: Settings) -> KindResult:
    """Orient ``d`` and project its first ``n_project`` directions; on the CPU."""
    d, tops = orient(d, W_U, settings.k, settings.n_project, settings.vocab_chunk)
    n = d.rank if settings.n_project is None else min(settings.n_project, d.rank)
    return KindResult(_decomp_to(d, "cpu"), _tops_to_cpu(tops), n)


def _to_device(w: ModelWeights, device: str) -> ModelWeights:
    if device == "cpu":
        return w
    return w.replace(
        **{
            name: getattr(w, name).to(device)
            for name in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_out", "W_E", "W_U")
        },
        W_gate=None if w.W_gate is None else w.W_gate.to(device),
    )


def _decomp_to(d: Decomposition, device: str) -> Decomposition:
    return replace(
        d,
        S=d.S.to(device),
        U=None if d.U is None else d.U.to(device),
        V=None if d.V is None else d.V.to(device),
        degenerate=d.degenerate.to(device),
    )


def _tops_to_cpu(t: TopTokens) -> TopTokens:
    return TopTokens(t.top_idx.cpu(), t.top_val.cpu(), t.bottom_idx.cpu(), t.bottom_val.cpu())
