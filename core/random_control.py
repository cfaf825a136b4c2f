"""The random Gaussian controls of an analysis, built on first use.

Two levels, because their readers need different amounts: :func:`controls` gives every
kind decomposed *and projected* through ``W_U`` (the grid's control view and the
statistics read tokens), read from the cache's controls part or built once and written;
:func:`control_decomposition` gives one kind's decomposition only (the spectra read
singular values), which for an MLP kind skips the projection, most of the cost.
Both come from the same draw (``settings.seed``), so they agree.
"""

from __future__ import annotations

from core.analysis import Analysis, settings_key
from core.cache import store
from core.cache.build import build_control_decomposition, build_controls
from core.cache.store import KindResult, ModelSVD
from core.errors import CacheError
from core.model.weights import ModelWeights
from core.progress import Progress, quiet
from core.svd.control import control_weights, draw_control
from core.svd.decompose import Decomposition


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
    """Whether :func:`control_decomposition` would answer without building anything."""
    return controls_ready(analysis) or kind in analysis._control_decomps


def control_decomposition(analysis: Analysis, kind: str) -> Decomposition:
    """``kind``'s random control, decomposed (singular values, directions; no tokens).

    From the projected controls when they are in memory; else drawn and decomposed for
    this kind alone when that needs no model (the cache entry keeps the controls' scales:
    faster than reading every kind's projected controls) or when no controls part is on
    disk; else read from that part. A drawn kind is kept in memory, not written: the
    first reader of the projected controls builds and writes those.
    """
    if not controls_ready(analysis):
        s = analysis.settings
        on_disk = store.controls_on_disk(s.cache_dir, analysis.meta, s.processing)
        if analysis.control_scales is not None or not on_disk:
            with analysis._controls_lock:
                if kind not in analysis._control_decomps:
                    d = build_control_decomposition(_drawn(analysis), kind, s)
                    analysis._control_decomps[kind] = d
                return analysis._control_decomps[kind]
    return controls(analysis)[kind].decomposition


def _drawn(analysis: Analysis) -> ModelWeights:
    """The control model: from the scales the cache entry keeps, else from the weights
    (which loads the model when the analysis came from the cache alone).
    """
    s, scales = analysis.settings, analysis.control_scales
    if scales is None:
        return control_weights(analysis.weights, s.seed)
    meta = analysis.meta
    return draw_control(meta, s.processing, scales, analysis.W_E, analysis.W_U, s.seed)
