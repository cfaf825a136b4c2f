"""The engine the CLI and the dashboard share: load, decompose, project, cache, query.

``open_analysis(settings)`` gives an :class:`Analysis` whose cache entry exists (built
on first use). ``directions(...)`` answers one component's question, from the cache
when it can, else by projecting that component's directions on demand (milliseconds).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core import store
from core.build import build_controls, build_svd
from core.errors import CacheError, SpecError
from core.loading import LoadedModel, load_model
from core.project import TokenTable, TopTokens, project_topk, token_table
from core.settings import HEAD_KINDS, MATRIX_KINDS, Settings
from core.store import KindResult, ModelSVD
from core.weights import ModelWeights, process, weights_from_params

Progress = Callable[[float, str], None]


def _quiet(_: float, __: str) -> None:
    return None


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
        """The model's :class:`~core.weights.ModelMeta`."""
        return self.raw.meta


@dataclass(frozen=True)
class Direction:
    """One singular direction with its token ends.

    ``top`` and ``bottom`` are lists of ``(raw token, display token, value)``; bottom
    is ordered most negative first.
    """

    index: int
    singular_value: float
    degenerate: bool
    top: list[tuple[str, str, float]]
    bottom: list[tuple[str, str, float]]

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form: ``{"index", "singular_value", "top", "bottom"}``."""
        return {
            "index": self.index,
            "singular_value": self.singular_value,
            "degenerate": self.degenerate,
            "top": [[t, v] for t, _, v in self.top],
            "bottom": [[t, v] for t, _, v in self.bottom],
        }


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
    progress: Progress = _quiet,
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
        tokens=token_table(tokenizer, raw.meta.d_vocab),
        model=model,
        from_cache=from_cache,
        persist=use_cache,
    )


def controls_ready(analysis: Analysis) -> bool:
    """Whether :func:`controls` would answer without building anything."""
    return bool(analysis.svd.controls or analysis._controls_memo)


def controls(analysis: Analysis, progress: Progress = _quiet) -> dict[str, KindResult]:
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


def open_analysis(settings: Settings, progress: Progress = _quiet) -> Analysis:
    """Load ``settings.model`` and return its analysis, building the cache if missing.

    Raises:
        ModelLoadError: the model cannot be loaded (the message says what to do).
    """
    progress(0.0, f"loading model {settings.model}")
    model = load_model(settings)
    raw = raw_weights(model)
    return analysis_from_weights(raw, model.tokenizer, settings, model, progress)


# --------------------------------------------------------------------------- queries


def check_component(meta: Any, kind: str, layer: int, head: int | None, has_gate: bool) -> None:
    """Raise :class:`SpecError` with one sentence when ``(kind, layer, head)`` is invalid."""
    if kind not in MATRIX_KINDS:
        raise SpecError(f"Unknown matrix {kind!r}; use one of {', '.join(MATRIX_KINDS)}.")
    if kind == "mlp_gate" and not has_gate:
        raise SpecError("This model's MLP has no gate; use mlp_in or mlp_out.")
    n_layers = 1 if kind == "embed" else meta.n_layers
    if not 0 <= layer < n_layers:
        raise SpecError(
            f"Layer {layer} is out of range; this model has layers 0 to {n_layers - 1}"
            + (" (the embedding has only layer 0)." if kind == "embed" else ".")
        )
    if kind in HEAD_KINDS:
        if head is None:
            raise SpecError(f"{kind} is per head; give --head between 0 and {meta.n_heads - 1}.")
        if not 0 <= head < meta.n_heads:
            raise SpecError(
                f"Head {head} is out of range; this model has heads 0 to {meta.n_heads - 1}."
            )
    elif head is not None:
        raise SpecError(f"{kind} has no heads; leave out --head.")


def kind_result(analysis: Analysis, kind: str, control: bool = False) -> KindResult:
    """The cached result of ``kind`` (or its control, built on first use); :class:`SpecError`
    if the entry does not hold ``kind``."""
    if kind not in analysis.svd.kinds:
        raise SpecError(
            f"{kind} is not in this cache entry; rebuild with that kind included (precompute)."
        )
    return controls(analysis)[kind] if control else analysis.svd.kinds[kind]


def directions(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None = None,
    n: int = 10,
    k: int = 20,
    filters: Sequence[str] = (),
    control: bool = False,
) -> list[Direction]:
    """The first ``n`` directions of one component with ``k`` tokens at each end.

    For a control, ``head`` is ignored (one control per layer). Served from the cache
    when it holds them unfiltered, else projected on demand.
    """
    if k < 1:
        raise SpecError(f"k must be at least 1, not {k}.")
    if n < 1:
        raise SpecError(f"n must be at least 1, not {n}.")
    check_component(analysis.meta, kind, layer, head, analysis.weights.W_gate is not None)
    res = kind_result(analysis, kind, control)
    d = res.decomposition
    c = d.index(layer, (0 if kind in HEAD_KINDS else None) if control else head)
    n = min(n, d.rank)
    if not filters and k <= analysis.svd.k and n <= res.n_projected:
        rows = slice(c * res.n_projected, c * res.n_projected + n)
        t = res.tops
        tops = TopTokens(
            t.top_idx[rows, :k], t.top_val[rows, :k], t.bottom_idx[rows, :k], t.bottom_val[rows, :k]
        )
    else:
        dirs = d.directions[c, :, :n].T
        if filters:
            W_sub, ids = filtered_unembed(analysis, filters)
            t = project_topk(dirs, W_sub, k, analysis.settings.vocab_chunk)
            tops = TopTokens(ids[t.top_idx], t.top_val, ids[t.bottom_idx], t.bottom_val)
        else:
            tops = project_topk(dirs, analysis.weights.W_U, k, analysis.settings.vocab_chunk)
    return [
        Direction(
            index=i,
            singular_value=float(d.S[c, i]),
            degenerate=bool(d.degenerate[c, i]),
            top=_named(analysis.tokens, tops.top_idx[i], tops.top_val[i]),
            bottom=_named(analysis.tokens, tops.bottom_idx[i], tops.bottom_val[i]),
        )
        for i in range(n)
    ]


def filtered_unembed(
    analysis: Analysis, filters: Sequence[str]
) -> tuple[Float[Tensor, "d_model kept"], Int[Tensor, " kept"]]:
    """``W_U`` restricted to the tokens that pass ``filters``, and those tokens' ids.

    Projecting onto the kept columns only is cheaper than masking the full product;
    the result is memoised per filter set.

    Raises:
        SpecError: no token passes the filters.
    """
    key = tuple(sorted(set(filters)))
    hit = analysis._unembed_memo.get(key)
    if hit is None:
        mask = analysis.tokens.mask(key)
        assert mask is not None
        ids = mask.nonzero().squeeze(1)
        if ids.numel() == 0:
            raise SpecError(f"No token passes the filters {', '.join(key)}; remove a filter.")
        hit = (analysis.weights.W_U[:, ids].contiguous(), ids)
        analysis._unembed_memo[key] = hit
    return hit


def _named(
    tokens: TokenTable, idx: torch.Tensor, val: torch.Tensor
) -> list[tuple[str, str, float]]:
    # tolist() once: indexing tensors element by element cost ~16 ms per grid.
    raw, display = tokens.raw, tokens.display
    return [(raw[i], display[i], v) for i, v in zip(idx.tolist(), val.tolist())]
