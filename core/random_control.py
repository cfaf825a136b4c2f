"""The random Gaussian controls of an analysis, built on first use.

Two levels: :func:`controls` gives every kind decomposed *and projected* through ``W_U``,
read from the cache's controls part or built once and written (a precompute with
``--controls``, a sweep); :func:`control_result` gives one kind decomposed with nothing
projected, which is what the pages need (the spectra read singular values; the grid's
control view and the statistics project the few directions they show, on demand). For an
MLP kind the projection is most of the cost. Both come from the same draw
(``settings.seed``) and the same sign rule, so they agree. One kind draws only the
matrices it reads (:func:`core.svd.control.draw_control`), and its decomposition is
written as a derived part of the entry (``part-control-<kind>``) for the next process.
"""

from __future__ import annotations

import contextlib

import torch

from core.analysis import Analysis, settings_key
from core.cache import store
from core.cache.build import build_control_decomposition, build_controls
from core.cache.parts import load_part, part_on_disk, save_part
from core.cache.store import KindResult, ModelSVD
from core.cache.tables import decomposition_from_tensors, decomposition_tensors
from core.errors import CacheError
from core.model.weights import ModelWeights
from core.progress import Progress, quiet
from core.svd.control import control_weights, draw_control
from core.svd.decompose import Decomposition
from core.svd.project import TopTokens


def controls_ready(analysis: Analysis) -> bool:
    """Whether :func:`controls` would answer without building anything."""
    return bool(analysis.svd.controls or analysis._controls_memo)


def controls(analysis: Analysis, progress: Progress = quiet) -> dict[str, KindResult]:
    """The random controls of every kind in the entry: from the entry when built, else
    read from the cache's controls part, else built now (and written, when the analysis
    persists). Built once per analysis even when many sessions ask at the same time.

    A precompute leaves them out because only the spectra, the grid's control view and
    the statistics read them (for GPT-2 small they cost a third of the precompute).
    """
    if analysis.svd.controls:
        return analysis.svd.controls
    if analysis._controls_memo:
        return analysis._controls_memo
    with analysis._controls_lock:
        if not analysis._controls_memo:
            s = analysis.settings
            key = settings_key(s)
            try:
                built = store.load_controls(s.cache_dir, analysis.meta, s.processing, key)
            except CacheError:
                built = build_controls(analysis.weights, s, progress)
                if analysis.persist:
                    svd = ModelSVD(analysis.meta, s.processing, analysis.svd.k, {}, built)
                    store.save_controls(svd, s.cache_dir, key)
            analysis._controls_memo.update(built)
    return analysis._controls_memo


def control_decomposition_ready(analysis: Analysis, kind: str) -> bool:
    """Whether :func:`control_result` would answer without building anything."""
    return controls_ready(analysis) or kind in analysis._control_decomps


def control_result(analysis: Analysis, kind: str) -> KindResult:
    """``kind``'s random control as the queries read it (:func:`core.query.kind_result`).

    The projected controls when they are in memory. Else the control of this kind alone,
    decomposed but with no direction projected (``n_projected = 0``: the grid projects
    what it shows on demand, with the same sign rule), when that needs no model: read
    from the entry when a process drew it before, else drawn from the controls' scales
    the cache entry keeps (both faster than reading every kind's projected controls).
    Else read from the projected controls' part when there is one, and drawn from the
    weights when there is none. A drawn kind is kept in memory and written.
    """
    if not controls_ready(analysis):
        s = analysis.settings
        # A kind already drawn answers without touching the disk (every grid render asks).
        alone = kind in analysis._control_decomps or analysis.control_scales is not None
        alone = alone or part_on_disk(s.cache_dir, analysis.meta, s.processing, _part(kind))
        if alone or not store.controls_on_disk(s.cache_dir, analysis.meta, s.processing):
            with analysis._controls_lock:
                if kind not in analysis._control_decomps:
                    analysis._control_decomps[kind] = _read_or_draw(analysis, kind)
                d = analysis._control_decomps[kind]
            empty = torch.zeros(0, s.k)
            none = TopTokens(empty.long(), empty, empty.long(), empty)
            return KindResult(d, none, 0)
    return controls(analysis)[kind]


def control_decomposition(analysis: Analysis, kind: str) -> Decomposition:
    """``kind``'s random control, decomposed (what the spectra read; see
    :func:`control_result`).
    """
    return control_result(analysis, kind).decomposition


def _part(kind: str) -> str:
    return f"control-{kind}"


def _read_or_draw(analysis: Analysis, kind: str) -> Decomposition:
    """``kind``'s control decomposition: read from the entry's derived part when a
    process drew it before, else drawn, decomposed and (when the analysis persists)
    written there, so that a new server process reads it rather than drawing again
    (about 2.4 s for SmolLM2-135M's MLP in). A damaged or stale part is drawn again.
    """
    s, key = analysis.settings, settings_key(analysis.settings)
    with contextlib.suppress(CacheError):
        extra, t = load_part(s.cache_dir, analysis.meta, s.processing, key, _part(kind))
        if extra.get("kind") == kind:
            return decomposition_from_tensors(kind, extra["components"], t, control=True)
    d = build_control_decomposition(_drawn(analysis, kind), kind, s)
    if analysis.persist:
        extra = {"kind": kind, "components": [list(c) for c in d.components]}
        tensors = decomposition_tensors(d)
        with contextlib.suppress(OSError, CacheError):  # a read-only cache still answers
            save_part(s.cache_dir, analysis.meta, s.processing, key, _part(kind), tensors, extra)
    return d


def _drawn(analysis: Analysis, kind: str) -> ModelWeights:
    """The control model, with only what ``kind`` reads drawn: from the scales the cache
    entry keeps, else from the weights (which loads the model when the analysis came
    from the cache alone).
    """
    s, scales = analysis.settings, analysis.control_scales
    if scales is None:
        return control_weights(analysis.weights, s.seed, (kind,))
    meta = analysis.meta
    return draw_control(meta, s.processing, scales, analysis.W_E, analysis.W_U, s.seed, (kind,))
