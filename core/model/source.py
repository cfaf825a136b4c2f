"""Where an analysis's weights come from: the model loaded now, or on first use.

An analysis opened from the cache alone (:func:`core.analysis.open_analysis`) holds a
:class:`ModelSource` that loads the model, once and thread-safely, only when something
needs the weights or a forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.background import BackgroundJob
from core.errors import CacheError, ModelLoadError
from core.model.loading import LoadedModel, load_model
from core.model.weights import ModelWeights, process, weights_from_params
from core.progress import Progress, quiet
from core.settings import Settings


@dataclass(frozen=True)
class Loaded:
    """The weights (and the model they came from) behind an analysis.

    Attributes:
        raw: weights as stored.
        weights: the view for the settings' processing (what was decomposed).
        model: the loaded model (``None`` when built from bare weights in tests).
    """

    raw: ModelWeights
    weights: ModelWeights
    model: LoadedModel | None = None


class ModelSource:
    """Where an analysis's weights come from: given up front, or loaded on first use.

    An analysis opened from the cache alone (:func:`open_analysis`) answers its queries
    from the cache; the model is loaded, once and thread-safely, only when something
    needs the weights or a forward pass (an edit, building the controls).
    """

    def __init__(
        self,
        path: str,
        loaded: Loaded | None = None,
        settings: Settings | None = None,
        weights_hash: str | None = None,
        tokenizer: Callable[[], Any] | None = None,
        on_load: Callable[[Loaded], None] | None = None,
        fingerprint: str | None = None,
    ) -> None:
        self.path = path
        self._loaded = loaded
        # The checkpoint folder's fingerprint when its weights were known to hash to
        # ``weights_hash`` (read from its files, or a cache entry found by it): weights
        # read or a model loaded later from unchanged files need no rehash.
        self._fingerprint = fingerprint
        # Run once the model is loaded (completes an old checkpoint part).
        self._on_load = on_load
        self._settings = settings
        self._hash = weights_hash
        # Read on first use: parsing tokenizer.json costs more than a cached answer.
        self._tokenizer_factory = tokenizer
        self._tokenizer: Any = None
        # Loaded for a forward pass before anything asked for the weights (a prompt on a
        # cache-opened analysis): the weights are then read from the files as before.
        self._model: LoadedModel | None = None
        self._lock = threading.Lock()

    @classmethod
    def given(
        cls, raw: ModelWeights, weights: ModelWeights, model: LoadedModel | None = None
    ) -> ModelSource:
        """A source whose weights are already in memory."""
        path = model.source if model is not None else raw.meta.name
        return cls(path, Loaded(raw, weights, model))

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory (nothing to load)."""
        return self._loaded is not None

    @property
    def model_ready(self) -> bool:
        """Whether a forward pass's model is loaded (nothing to load for :meth:`model`)."""
        return self._model is not None or (
            self._loaded is not None and self._loaded.model is not None
        )

    def get(self, progress: Progress = quiet) -> Loaded:
        """The weights: read now from the checkpoint's files where
        :func:`read_weights` knows them (the model then loads on first use,
        :meth:`model`), else with the model loaded now.

        Raises:
            ModelLoadError: the model cannot be loaded.
            CacheError: its weights are not the ones the cache entry was built from.
        """
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    assert self._settings is not None
                    self._loaded = self._read(self._settings, progress)
                    if self._on_load is not None:
                        self._on_load(self._loaded)
        return self._loaded

    def _read(self, settings: Settings, progress: Progress) -> Loaded:
        """The weights from the files, checked against the entry's hash, else from the
        model (loaded now unless a forward pass loaded it already).
        """
        fp = _fingerprint(self.path)
        known = self._hash if self._unchanged(fp) else None
        read = read_weights(settings, self.path, known) if fp is not None else None
        if read is None:
            return load_weights(settings, self._hash, progress, self._model)
        _check(settings, read.raw.meta.weights_hash, self._hash)
        self._fingerprint = fp
        return Loaded(read.raw, read.weights, self._model)

    def model(self, progress: Progress = quiet) -> LoadedModel | None:
        """The loaded model, loading it now if need be, without reading the weights
        (a forward pass needs only the model; on SmolLM2-135M reading them first added
        4.4 s to a prompt's first answer). ``None`` for bare weights (no settings to load
        a model from).

        Raises:
            ModelLoadError: the model cannot be loaded.
            CacheError: its weights are not the ones the analysis was built from.
        """
        if self._settings is None:
            return self.get(progress).model
        if self._model is not None:  # not behind a read of the weights (get) in progress
            return self._model
        with self._lock:
            if self._loaded is not None and self._loaded.model is not None:
                return self._loaded.model
            if self._model is None:
                self._model = self._load_model(self._settings, progress)
            if self._loaded is not None:
                self._loaded = Loaded(self._loaded.raw, self._loaded.weights, self._model)
            return self._model

    def _load_model(self, settings: Settings, progress: Progress) -> LoadedModel:
        """The model, checked against the weights' known hash unless the folder kept the
        fingerprint that hash is known for.
        """
        if self._unchanged(_fingerprint(self.path)):
            progress(0.0, f"loading model {settings.model}")
            return load_model(settings)
        # The model's own view is read only to check its weights.
        want = self._loaded.raw.meta.weights_hash if self._loaded is not None else self._hash
        return _loaded_model(settings, want, progress)[0]

    def _unchanged(self, fp: str | None) -> bool:
        """Whether the folder's fingerprint ``fp`` is the one its weights' hash is known
        for (no rehash needed).
        """
        return fp is not None and fp == self._fingerprint

    @property
    def tokenizer(self) -> Any:
        """The tokenizer: the loaded model's, else the one read from the checkpoint's
        ``tokenizer.json``, else the model's (loading it).
        """
        if self._model is not None:
            return self._model.tokenizer
        if self._loaded is not None and self._loaded.model is not None:
            return self._loaded.model.tokenizer
        if self._tokenizer is None and self._tokenizer_factory is not None:
            self._tokenizer = self._tokenizer_factory()
            self._tokenizer_factory = None
        if self._tokenizer is not None:
            return self._tokenizer
        model = self.model()
        return None if model is None else model.tokenizer


def load_weights(
    settings: Settings,
    weights_hash: str | None,
    progress: Progress,
    model: LoadedModel | None = None,
) -> Loaded:
    """Load ``settings.model`` (unless ``model`` is it, loaded already) and view its
    weights for ``settings.processing``.

    Raises:
        ModelLoadError: the model cannot be loaded.
        CacheError: its weights' hash is not ``weights_hash`` (when given).
    """
    model, raw = _loaded_model(settings, weights_hash, progress, model)
    return Loaded(raw, process(raw, settings.processing), model)


def _loaded_model(
    settings: Settings,
    weights_hash: str | None,
    progress: Progress,
    model: LoadedModel | None = None,
) -> tuple[LoadedModel, ModelWeights]:
    """``settings.model`` loaded (unless ``model`` is it), and its raw weights, checked
    against ``weights_hash``.
    """
    if model is None:
        progress(0.0, f"loading model {settings.model}")
        model = load_model(settings)
    raw = raw_weights(model)
    _check(settings, raw.meta.weights_hash, weights_hash)
    return model, raw


def _check(settings: Settings, got: str, want: str | None) -> None:
    """Raise unless weights hashed ``got`` are the ``want`` ones (``None``: any)."""
    if want is not None and got != want:
        raise CacheError(
            f"The weights of {settings.model} changed after its cache entry was opened; "
            "run the command again (or reload the page) to rebuild it."
        )


def _fingerprint(path: str) -> str | None:
    from core.model.fingerprint import fingerprint

    return fingerprint(Path(path)) if Path(path).is_dir() else None


def read_weights(
    settings: Settings, directory: str, weights_hash: str | None = None
) -> Loaded | None:
    """The raw and processed weights of the checkpoint in ``directory``, read from its
    files without a model (:func:`core.model.streamed.read_checkpoint`: no TransformerLens
    import and no model load, seconds and the model's memory saved on a first build);
    ``None`` when that reader does not know the checkpoint (the caller loads the model).
    ``weights_hash``: their hash, when known (not computed again).

    Only on the CPU: a build on a GPU loads the model there, and edits read the weights
    on the model's device.
    """
    from safetensors import SafetensorError

    from core.model.streamed import read_checkpoint

    if settings.torch_device() != "cpu":
        return None
    try:
        raw = read_checkpoint(
            directory, settings.model, matched_only=True, weights_hash=weights_hash
        )
    except (ModelLoadError, OSError, ValueError, KeyError, SafetensorError):
        # Whatever this reader cannot read, the model's loader reads or words the error.
        return None
    return Loaded(raw, process(raw, settings.processing))


def raw_weights(model: LoadedModel) -> ModelWeights:
    """The raw weight view of a loaded model: through its bridge, or read from the module
    by checkpoint names where it was loaded without one.
    """
    if model.bridge is None:
        from core.model.streamed import module_weights

        with torch.no_grad():
            return module_weights(model.hf_model, model.name)
    arch = getattr(model.hf_model.config, "architectures", None) or [type(model.hf_model).__name__]
    with torch.no_grad():
        return weights_from_params(
            model.bridge.tl_parameters(), model.bridge.cfg, model.name, arch[0]
        )


class ModelPreload(BackgroundJob):
    """:meth:`ModelSource.model`, then :meth:`ModelSource.get`, on a background thread:
    a page that will need a forward pass starts it while the visitor is still typing
    (loading SmolLM2-135M took 3.5-4 s of a first prompt's answer on 2 cores). The
    page's own request then waits on the source's lock for this load, or finds the model
    loaded; a failed load is kept in :attr:`error`, and the page's request loads again
    and shows the failure itself. An exiting interpreter waits for the load rather than
    killing it inside torch.
    """

    thread_name = "svd-lens-model-load"
    daemon = False
    failure = "loading the model in the background failed"

    def __init__(self, source: ModelSource) -> None:
        self._source = source
        super().__init__()

    def _work(self) -> None:
        self._source.model()
        # Then the weights, from the files: the pages that run a prompt need them next
        # (the Prompt page's directions read W_O: 0.6 s of its first tables on
        # SmolLM2-135M; an edit reads the raw matrices). The model is loaded first, so
        # a prompt sent meanwhile does not wait for them (:meth:`ModelSource.model`
        # returns a loaded model without the lock).
        self._source.get()
