"""The engine the CLI and the dashboard share: load, decompose, project, cache, query.

``open_analysis(settings)`` gives an :class:`Analysis` whose cache entry exists (built
on first use). ``directions(...)`` answers one component's question, from the cache
when it can, else by projecting that component's directions on demand (milliseconds).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from core.cache import store
from core.cache.build import build_controls, build_svd
from core.cache.store import KindResult, ModelSVD
from core.errors import CacheError
from core.model.loading import LoadedModel, load_model
from core.model.weights import ModelWeights, process, weights_from_params
from core.progress import Progress, quiet
from core.settings import Settings
from core.svd.project import TokenTable, token_table


@dataclass(frozen=True)
class Analysis:
    """A model ready to query. Shared read-only (the dashboard caches one per model).

    Attributes:
        settings: the options it was built with.
        raw: weights as stored.
        weights: the view for ``settings.processing`` (what was decomposed).
        svd: the decompositions and cached projections.
        tokens: readable token strings and filter masks.
        model: the loaded model (``None`` when built from bare weights in tests).
        from_cache: whether ``svd`` was read from disk rather than built now.
        persist: whether parts built on first use (the controls) are written to the cache.
    """

    settings: Settings
    raw: ModelWeights
    weights: ModelWeights
    svd: ModelSVD
    tokens: TokenTable
    model: LoadedModel | None = None
    from_cache: bool = False
    persist: bool = True
    # Memo of W_U restricted to each token filter's columns. Filling it never changes
    # what any query returns, so sharing one Analysis across sessions stays read-only.
    _unembed_memo: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # The controls once read or built (see :func:`controls`): deterministic from the
    # settings' seed, so filling it is as read-only as the memo above.
    _controls_memo: dict[str, KindResult] = field(default_factory=dict, compare=False, repr=False)
    _controls_lock: threading.Lock = field(
        default_factory=threading.Lock, compare=False, repr=False
    )

    @property
    def meta(self) -> Any:
        """The model's :class:`~core.model.weights.ModelMeta`."""
        return self.raw.meta


def settings_key(settings: Settings) -> dict[str, Any]:
    """The settings that shape a cache entry's content."""
    return {
        "k": settings.k,
        "n_project": settings.n_project,
        "seed": settings.seed,
        "degeneracy_tol": settings.degeneracy_tol,
        "kinds": list(settings.kinds),
    }


def analysis_from_weights(
    raw: ModelWeights,
    tokenizer: Any,
    settings: Settings,
    model: LoadedModel | None = None,
    progress: Progress = quiet,
    use_cache: bool = True,
) -> Analysis:
    """Process, then read the cache entry or build (and write) it."""
    weights = process(raw, settings.processing)
    key = settings_key(settings)
    svd: ModelSVD | None = None
    if use_cache:
        try:
            svd = store.load(settings.cache_dir, weights.meta, settings.processing, key)
        except CacheError:
            svd = None
    from_cache = svd is not None
    if svd is None:
        svd = build_svd(weights, settings, progress)
        if use_cache:
            store.save(svd, settings.cache_dir, key)
    return Analysis(
        settings=settings,
        raw=raw,
        weights=weights,
        svd=svd,
        tokens=token_table(tokenizer, raw.meta.d_vocab, raw.W_U),
        model=model,
        from_cache=from_cache,
        persist=use_cache,
    )


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


def raw_weights(model: LoadedModel) -> ModelWeights:
    """The raw weight view of a loaded model."""
    arch = getattr(model.hf_model.config, "architectures", None) or [type(model.hf_model).__name__]
    with torch.no_grad():
        return weights_from_params(
            model.bridge.tl_parameters(), model.bridge.cfg, model.name, arch[0]
        )


def open_analysis(settings: Settings, progress: Progress = quiet) -> Analysis:
    """Load ``settings.model`` and return its analysis, building the cache if missing.

    Raises:
        ModelLoadError: the model cannot be loaded (the message says what to do).
    """
    progress(0.0, f"loading model {settings.model}")
    model = load_model(settings)
    raw = raw_weights(model)
    return analysis_from_weights(raw, model.tokenizer, settings, model, progress)
