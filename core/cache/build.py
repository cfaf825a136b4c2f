"""Building a cache entry: decompose every kind and project its first directions.

:func:`build_svd` makes the real decompositions a precompute writes (and
:func:`build_and_save` writes them as they come); :func:`build_first`
and :func:`fill_kind` make the same entry in two steps, so that a page can be shown after
the decompositions and the first few directions of each component (seconds), while the
rest are projected in the background (:func:`core.analysis.analysis_from_weights`);
:func:`build_controls` makes the random Gaussian controls, which only the spectra,
the grid's control toggle and the statistics read, so they are built on first use
(:func:`core.random_control.controls`) unless a precompute asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import Tensor

from core.cache import store
from core.cache.store import KindResult, ModelSVD
from core.model.weights import ModelWeights
from core.progress import Progress, quiet
from core.settings import Settings
from core.svd.control import control_weights, decompose_control, is_undrawn
from core.svd.decompose import Decomposition, decompose_kind, token_side_matrices, uses_gram
from core.svd.gram import HostGrams
from core.svd.project import TopTokens, orient, read_unembed

#: Directions of each component projected before anything is shown (the atlas's
#: columns; the grid projects what it shows on demand, in milliseconds).
FIRST_DIRECTIONS = 3
#: The order the background fill projects the kinds in: what search and the atlas read
#: first.
FILL_ORDER: tuple[str, ...] = ("ov", "mlp_in", "mlp_out", "mlp_gate", "qk", "embed")


def build_svd(
    weights: ModelWeights,
    settings: Settings,
    progress: Progress = quiet,
    sink: Callable[[str, KindResult], None] | None = None,
) -> ModelSVD:
    """Decompose and project every kind of ``weights`` (the controls are
    :func:`build_controls`'s).

    Runs on ``settings.torch_device()``; results come back on the CPU, each handed to
    ``sink`` as soon as it is done. Each kind's ``tops`` hold the first
    ``settings.n_project`` directions of every component, read through ``W_U``
    transformed by ``settings.projection``.
    """
    device = settings.torch_device()
    kinds = [k for k in settings.kinds if k in weights.kinds()]
    W_U = read_unembed(weights.W_U.to(device), settings.projection)
    on_device = _to_device(weights, device)
    out: dict[str, KindResult] = {}
    host = _host_grams(on_device, kinds) if settings.gram_eigh == "host" else {}
    with HostGrams(host) as grams:
        for i, kind in enumerate(kinds):
            # Three marks per kind, so the benchmark can tell the decomposition, the
            # projection and the copy back apart (core.bench.stages).
            progress(i / len(kinds), f"{kind}: SVD")
            d = decompose_kind(on_device, kind, settings.degeneracy_tol, grams.take(kind))
            progress((i + 0.5) / len(kinds), f"{kind}: projection")
            out[kind] = _result(d, W_U, settings, partial(progress, (i + 0.9) / len(kinds)))
            if sink is not None:
                sink(kind, out[kind])
    progress(1.0, "done")
    return ModelSVD(weights.meta, weights.processing, settings.k, out)


def build_and_save(
    weights: ModelWeights,
    settings: Settings,
    settings_key: dict[str, Any],
    progress: Progress = quiet,
) -> ModelSVD:
    """:func:`build_svd`, writing the entry into ``settings.cache_dir`` as it goes: each
    kind's file is written on a background thread while the next kind is built
    (:class:`~core.cache.store.EntryWriter`), so the write overlaps the compute, most of
    all on a GPU. ``settings_key`` is :func:`core.analysis.settings_key`'s.
    """
    with store.EntryWriter(
        settings.cache_dir, weights.meta, weights.processing, settings_key
    ) as writer:
        svd = build_svd(weights, settings, progress, sink=writer.add)
        progress(1.0, "save: the last files and the manifest")
        writer.finish(svd)
    progress(1.0, "done")
    return svd


def build_first(weights: ModelWeights, settings: Settings, progress: Progress = quiet) -> ModelSVD:
    """Every kind decomposed, with only the first :data:`FIRST_DIRECTIONS` directions of
    each component oriented and projected; :func:`fill_kind` adds the rest.

    After :func:`fill_kind` on every kind the entry equals :func:`build_svd`'s (the sign
    rule and the projection are per direction).
    """
    first = settings.replace(
        n_project=FIRST_DIRECTIONS
        if settings.n_project is None
        else min(settings.n_project, FIRST_DIRECTIONS)
    )
    return build_svd(weights, first, progress)


def is_filled(res: KindResult, settings: Settings) -> bool:
    """Whether ``res`` holds every direction ``settings.n_project`` asks for."""
    rank = res.decomposition.rank
    return res.n_projected >= (
        rank if settings.n_project is None else min(settings.n_project, rank)
    )


def fill_kind(res: KindResult, W_U: Tensor, settings: Settings) -> KindResult:
    """``res`` (from :func:`build_first`) with directions ``res.n_projected ..
    n_project - 1`` of each component oriented and projected too; on the CPU.

    ``W_U`` is the unembedding as read (``settings.projection`` applied already:
    :attr:`core.analysis.Analysis.W_U`).
    """
    if is_filled(res, settings):
        return res
    device = settings.torch_device()
    d = _decomp_to(res.decomposition, device)
    start = res.n_projected
    d, more = orient(d, W_U.to(device), settings.k, settings.n_project, settings.vocab_chunk, start)
    n = d.rank if settings.n_project is None else min(settings.n_project, d.rank)
    C, k = len(d.components), res.tops.top_idx.shape[1]

    def merge(a: Tensor, b: Tensor) -> Tensor:
        # Component-major rows: each component's first ``start`` rows, then its new ones.
        return torch.cat([a.reshape(C, start, k), b.cpu().reshape(C, n - start, k)], 1).reshape(
            C * n, k
        )

    t = res.tops
    tops = TopTokens(
        merge(t.top_idx, more.top_idx),
        merge(t.top_val, more.top_val),
        merge(t.bottom_idx, more.bottom_idx),
        merge(t.bottom_val, more.bottom_val),
    )
    return KindResult(_decomp_to(d, "cpu"), tops, n)


def build_controls(
    weights: ModelWeights, settings: Settings, progress: Progress = quiet
) -> dict[str, KindResult]:
    """The random Gaussian control of every kind in ``settings.kinds``: one matrix per
    layer of each kind's shape (head 0 stands for the heads), drawn from
    ``settings.seed``, decomposed and projected through the real ``W_U``.
    """
    device = settings.torch_device()
    kinds = [k for k in settings.kinds if k in weights.kinds()]
    W_U = read_unembed(weights.W_U.to(device), settings.projection)
    out: dict[str, KindResult] = {}
    # The random model is drawn once for every kind (decompose_control would draw the
    # whole model again per kind), then decomposed on the device.
    ctrl = _to_device(control_weights(weights, settings.seed), device)
    for i, kind in enumerate(kinds):
        progress(i / max(1, len(kinds)), f"control {kind}: SVD + projection")
        out[kind] = _result(_control_of(ctrl, kind, settings, device), W_U, settings)
    progress(1.0, "done")
    return out


def build_control_decomposition(ctrl: ModelWeights, kind: str, settings: Settings) -> Decomposition:
    """``kind``'s random control from the drawn control model ``ctrl``
    (:mod:`core.svd.control`), decomposed but neither oriented nor projected (what the
    spectra read; the projection through ``W_U`` is most of :func:`build_controls`' cost
    for an MLP kind). The same draw as :func:`build_controls`, so the same singular
    values; returned on the CPU.
    """
    device = settings.torch_device()
    return _decomp_to(_control_of(_to_device(ctrl, device), kind, settings, device), "cpu")


def _control_of(ctrl: ModelWeights, kind: str, settings: Settings, device: str) -> Decomposition:
    """``kind``'s control from the control model ``ctrl``, on ``device``. The embedding's
    is drawn from the real ``W_E``'s scale, which the control model keeps.
    """
    if kind == "embed":
        d = decompose_control(ctrl, kind, settings.degeneracy_tol, settings.seed)
        return _decomp_to(d, device)
    return replace(decompose_kind(ctrl, kind, settings.degeneracy_tol), control=True)


def _result(
    d: Decomposition,
    W_U: Tensor,
    settings: Settings,
    mark: Callable[[str], None] | None = None,
) -> KindResult:
    """Orient ``d`` and project its first ``n_project`` directions; on the CPU. ``mark``
    is told when the copy to the CPU starts.
    """
    d, tops = orient(d, W_U, settings.k, settings.n_project, settings.vocab_chunk)
    n = d.rank if settings.n_project is None else min(settings.n_project, d.rank)
    if mark is not None:
        mark(f"{d.kind}: copy to the CPU")
    return KindResult(_decomp_to(d, "cpu"), _tops_to_cpu(tops), n)


def _host_grams(weights: ModelWeights, kinds: list[str]) -> dict[str, tuple[Tensor, str]]:
    """What :class:`~core.svd.gram.HostGrams` solves for ``kinds``: each kind whose token
    side comes from Gram matrices, as a ``[b, m, n]`` batch and its side.
    """
    out: dict[str, tuple[Tensor, str]] = {}
    for kind in kinds:
        found = token_side_matrices(weights, kind)
        if found is not None and uses_gram(*found):
            W, side = found
            out[kind] = (W.reshape(-1, *W.shape[-2:]), side)
    return out


def _to_device(w: ModelWeights, device: str) -> ModelWeights:
    if device == "cpu":
        return w

    def to(t: Tensor | None) -> Tensor | None:
        # A control's undrawn matrix stays a placeholder: moving it would allocate it.
        return t if t is None or is_undrawn(t) else t.to(device)

    names = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out", "W_E", "W_U")
    return w.replace(**{name: to(getattr(w, name)) for name in names})


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
