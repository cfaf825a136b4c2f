"""The engine the CLI and the dashboard share: load, decompose, project, cache, query.

``open_analysis(settings)`` gives an :class:`Analysis` whose cache entry exists (built
on first use). ``directions(...)`` answers one component's question, from the cache
when it can, else by projecting that component's directions on demand (milliseconds).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.cache import checkpoint, store
from core.cache.build import build_and_save, build_first, build_svd
from core.cache.fill import Fill
from core.cache.store import KindResult, ModelSVD
from core.errors import CacheError
from core.memo import TensorMemo
from core.model.fingerprint import fingerprint
from core.model.loading import LoadedModel, locate_model
from core.model.noise import kind_floors, noise_for_model
from core.model.source import Loaded, ModelSource, load_weights, read_weights
from core.model.tokenizer import file_tokenizer, hf_tokenizer
from core.model.weights import ModelWeights, process
from core.progress import Progress, quiet
from core.settings import MATRIX_KINDS, Settings
from core.svd.control import control_scales
from core.svd.decompose import Decomposition
from core.svd.project import TokenTable, read_unembed, token_table

#: Bytes of exact decompositions an analysis keeps for edits: every MLP matrix of
#: SmolLM2-135M (2.7 MB each), or a dozen of GPT-2 XL's (20 MB each).
EXACT_MEMO_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Analysis:
    """A model ready to query. Shared read-only (the dashboard caches one per model).

    Attributes:
        settings: the options it was built with.
        svd: the decompositions and cached projections.
        tokens: readable token strings and filter masks.
        W_U: the unembedding as directions are read ``[d_model, d_vocab]``: the processed
            view's, transformed by ``settings.projection``
            (:func:`core.svd.project.read_unembed`). Every reading of a direction as
            tokens goes through it; edits act on :attr:`weights` instead.
        W_E: the embedding ``[d_vocab, d_model]``.
        source: where the weights and the model come from (see :attr:`raw`).
        from_cache: whether ``svd`` was read from disk rather than built now.
        persist: whether parts built on first use (the controls) are written to the cache.
    """

    settings: Settings
    svd: ModelSVD
    tokens: TokenTable
    W_U: Float[Tensor, "d_model d_vocab"]
    W_E: Float[Tensor, "d_vocab d_model"]
    source: ModelSource
    from_cache: bool = False
    persist: bool = True
    fill: Fill | None = field(default=None, compare=False)
    # Read from the checkpoint part when the analysis came from the cache alone: the
    # random controls' scales (core.svd.control), so drawing one loads no model.
    control_scales: dict[str, Tensor] | None = field(default=None, compare=False, repr=False)
    # Likewise each component's quantization noise floor, per kind (quantized models).
    noise_floors: dict[str, Tensor] | None = field(default=None, compare=False, repr=False)
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
    # Controls decomposed without their projection (what the spectra read), per kind.
    _control_decomps: dict[str, Decomposition] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Each edited component's exact (float64) token-side singular vectors
    # (core.edit.rank_one.token_vectors), kept so that every edit set, sweep plan and
    # knockout set touching a matrix decomposes it once (0.2-0.4 s for an MLP matrix of
    # SmolLM2-135M); as deterministic from the weights as the memos above.
    _exact_memo: TensorMemo[Tensor] = field(
        default_factory=lambda: TensorMemo(EXACT_MEMO_BYTES), compare=False, repr=False
    )

    @classmethod
    def of(
        cls,
        settings: Settings,
        raw: ModelWeights,
        weights: ModelWeights,
        svd: ModelSVD,
        tokens: TokenTable,
        model: LoadedModel | None = None,
        from_cache: bool = False,
        persist: bool = True,
        source: ModelSource | None = None,
    ) -> Analysis:
        """An analysis whose weights are in memory (``source``: where they came from, when
        not simply ``raw``, ``weights`` and ``model``).
        """
        source = source if source is not None else ModelSource.given(raw, weights, model)
        W_R = read_unembed(weights.W_U, settings.projection)
        return cls(settings, svd, tokens, W_R, weights.W_E, source, from_cache, persist)

    @property
    def filling(self) -> bool:
        """Whether directions are still being projected in the background."""
        return self.fill is not None and not self.fill.done.is_set()

    @property
    def meta(self) -> Any:
        """The model's :class:`~core.model.weights.ModelMeta`."""
        return self.svd.meta

    @property
    def raw(self) -> ModelWeights:
        """Weights as stored; loads the model if the analysis came from the cache alone."""
        return self.source.get().raw

    @property
    def weights(self) -> ModelWeights:
        """The view for ``settings.processing``; loads the model if need be (see :attr:`raw`)."""
        return self.source.get().weights

    @property
    def model(self) -> LoadedModel | None:
        """The loaded model (``None`` for bare weights); loads it if need be."""
        return self.source.model()

    @property
    def tokenizer(self) -> Any:
        """A tokenizer for queries, without loading the model when the checkpoint has a
        ``tokenizer.json``.
        """
        return self.source.tokenizer

    def kinds(self) -> tuple[str, ...]:
        """Matrix kinds this model has, in display order."""
        return tuple(k for k in MATRIX_KINDS if k != "mlp_gate" or self.meta.gated)


def settings_key(settings: Settings) -> dict[str, Any]:
    """The settings that shape a cache entry's content."""
    return {
        "k": settings.k,
        "n_project": settings.n_project,
        "seed": settings.seed,
        "degeneracy_tol": settings.degeneracy_tol,
        "kinds": list(settings.kinds),
        "projection": settings.projection,
    }


def analysis_from_weights(
    raw: ModelWeights,
    tokenizer: Any,
    settings: Settings,
    model: LoadedModel | None = None,
    progress: Progress = quiet,
    use_cache: bool = True,
    background: bool = False,
    fill_progress: Progress = quiet,
    fingerprint: str | None = None,
    source: ModelSource | None = None,
) -> Analysis:
    """Process, then read the cache entry or build (and write) it.

    With ``background`` a missing entry is built in two steps: the decompositions and
    the first few directions of each component now (:func:`core.cache.build.build_first`),
    the rest in a background thread (:attr:`Analysis.fill`, reporting to
    ``fill_progress``), which writes the entry when done. Queries give the same answers
    during the fill as after it. ``fingerprint`` (the checkpoint's) is written with the
    entry so the next open needs no model. ``source``: where ``raw`` came from, when not
    from ``model`` (:meth:`Analysis.of`).
    """
    weights = source.get().weights if source is not None else process(raw, settings.processing)
    key = settings_key(settings)
    svd: ModelSVD | None = None
    if use_cache:
        try:
            svd = store.load(settings.cache_dir, weights.meta, settings.processing, key)
        except CacheError:
            svd = None
    from_cache = svd is not None
    tokens = token_table(tokenizer, raw.meta.d_vocab, raw.W_U, norm_W_U=weights.W_U)
    if svd is not None or not background:
        if svd is None and use_cache:
            svd = build_and_save(weights, settings, key, progress)
        elif svd is None:
            svd = build_svd(weights, settings, progress)
        a = Analysis.of(settings, raw, weights, svd, tokens, model, from_cache, use_cache, source)
        if use_cache:  # the entry is written; its checkpoint part goes beside it
            _persist(a, fingerprint, entry=False)
        return a
    svd = build_first(weights, settings, progress)
    a = Analysis.of(settings, raw, weights, svd, tokens, model, False, use_cache, source)

    def done(filled: ModelSVD) -> None:
        # Reads ``a`` when called: by then it is the analysis that holds the fill.
        if use_cache:
            _persist(a, fingerprint, entry=True)

    fill = Fill(svd, a.W_U, settings, done, fill_progress)
    a = replace(a, fill=fill)
    fill.start()
    return a


def _persist(a: Analysis, fingerprint: str | None, entry: bool) -> None:
    """Write ``a``'s entry (when ``entry``), the controls it built, and its checkpoint
    part (when the checkpoint has a ``fingerprint``).
    """
    s, key = a.settings, settings_key(a.settings)
    if entry:
        store.save(a.svd, s.cache_dir, key)
        if a._controls_memo:  # built while the entry was filling; save() dropped the old
            ctl = ModelSVD(a.meta, s.processing, a.svd.k, {}, dict(a._controls_memo))
            store.save_controls(ctl, s.cache_dir, key)
    if fingerprint is not None:
        scales = control_scales(a.weights)
        part = checkpoint.CheckpointPart(
            fingerprint, a.W_U, a.W_E, a.tokens, scales, _noise_floors(s, a.svd, a.source.get())
        )
        checkpoint.save_checkpoint(s.cache_dir, a.meta, s.processing, key, part)


def _noise_floors(settings: Settings, svd: ModelSVD, loaded: Loaded) -> dict[str, Tensor] | None:
    """Each kind's per-component noise floor when the checkpoint was quantized."""
    noise = noise_for_model(settings.model)
    if noise is None:
        return None
    return {
        kind: kind_floors(noise, loaded.raw, loaded.weights, kind, r.decomposition.components)
        for kind, r in svd.kinds.items()
    }


def _complete_part(
    settings: Settings, svd: ModelSVD, part: checkpoint.CheckpointPart, loaded: Loaded
) -> None:
    """Once the model is loaded, rewrite a checkpoint part written before it kept the
    controls' scales and the noise floors, so that the next process draws the spectra's
    controls and reads the floors without loading the model. A cache that cannot be
    written is left as it is: the loaded model answers.
    """
    # Checked before computing anything: this runs at every load of a cache-opened model.
    quantized = noise_for_model(settings.model) is not None
    if part.control_scales is not None and (part.noise_floors is not None or not quantized):
        return
    floors = _noise_floors(settings, svd, loaded)
    done = replace(part, control_scales=control_scales(loaded.weights), noise_floors=floors)
    key = settings_key(settings)
    with contextlib.suppress(OSError, CacheError):
        checkpoint.save_checkpoint(settings.cache_dir, svd.meta, settings.processing, key, done)


def open_analysis(
    settings: Settings,
    progress: Progress = quiet,
    background: bool = False,
    fill_progress: Progress = quiet,
    lazy: bool = False,
) -> Analysis:
    """Return ``settings.model``'s analysis: from the cache alone when an entry matches the
    checkpoint's fingerprint (no model load), else load the model and read the entry by
    its weights' hash, building it if missing.

    With ``background``, a missing entry is built as :func:`analysis_from_weights`
    describes (first directions now, the rest in the background). With ``lazy`` an entry
    found by fingerprint reads each kind when first asked for (:func:`core.cache.store.load`):
    for a process that answers one question.

    Raises:
        ModelLoadError: the model cannot be loaded (the message says what to do).
    """
    source = locate_model(settings.model)
    path = Path(source)
    fp = fingerprint(path) if path.is_dir() else None
    key = settings_key(settings)
    if fp is not None:
        hit = checkpoint.find_by_fingerprint(
            settings.cache_dir, settings.model, settings.processing, key, fp, lazy=lazy
        )
        if hit is not None:
            svd, part = hit
            # The entry keeps the name it was built under; this spec names it now.
            svd = replace(svd, meta=replace(svd.meta, name=settings.model))
            unloaded = ModelSource(
                source,
                None,
                settings,
                svd.meta.weights_hash,
                partial(file_tokenizer, path),
                partial(_complete_part, settings, svd, part),
                fingerprint=fp,  # the entry was found by it: unchanged files need no rehash
            )
            return Analysis(
                settings,
                svd,
                part.tokens,
                part.W_U,
                part.W_E,
                unloaded,
                True,
                True,
                control_scales=part.control_scales,
                noise_floors=part.noise_floors,
            )
    # A new entry: its weights read from the checkpoint's files where that reader knows
    # them, the model loaded only when something needs it (an edit, a prompt).
    read = _read_checkpoint(settings, source, fp) if fp is not None else None
    if read is not None:
        src, tokenizer = read
        return analysis_from_weights(
            src.get().raw,
            tokenizer,
            settings,
            None,
            progress,
            background=background,
            fill_progress=fill_progress,
            fingerprint=fp,
            source=src,
        )
    loaded = load_weights(settings, None, progress)
    assert loaded.model is not None
    return analysis_from_weights(
        loaded.raw,
        loaded.model.tokenizer,
        settings,
        loaded.model,
        progress,
        background=background,
        fill_progress=fill_progress,
        fingerprint=fp,  # lets the next open find the entry without loading the model
    )


def _read_checkpoint(settings: Settings, directory: str, fp: str) -> tuple[ModelSource, Any] | None:
    """A source holding the checkpoint's weights read from its files (the model loaded
    on first use, unchecked while the folder keeps its fingerprint ``fp``), and a
    tokenizer with Hugging Face's interface for the token table; ``None`` when either
    cannot be had that way.
    """
    loaded = read_weights(settings, directory)
    if loaded is None:
        return None
    tokenizer = hf_tokenizer(directory)
    if tokenizer is None:
        return None
    raw = loaded.raw
    src = ModelSource(
        directory, loaded, settings, raw.meta.weights_hash, lambda: tokenizer, fingerprint=fp
    )
    return src, tokenizer
