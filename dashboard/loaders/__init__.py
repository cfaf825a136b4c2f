"""Everything the dashboard caches: one read-only ``Analysis`` and one ``SearchIndex`` per
(model, processing, cache dir), shared by every session (``st.cache_resource``), and the
tables, chart specs and results built from them (``st.cache_data``).

Pages get the analysis from ``components.setup()`` (which calls :func:`analysis_or_error`)
and everything else from the functions here, keyed by a ``state.Selection``. Never
mutate what these return: it is shared across sessions. Loading a model or building a
missing cache entry shows a progress bar with core's messages.

Page-specific loaders sit beside this module: :mod:`dashboard.loaders.compare` (the
Compare page) and :mod:`dashboard.loaders.examples` (dataset examples on the grid).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import streamlit as st
from core.analysis import Analysis, open_analysis
from core.decompose import Components
from core.errors import CoreError
from core.model.source import ModelPreload
from core.query import Direction, directions, method_components, method_directions
from core.random_control import control_decomposition_ready, control_result
from core.search import SearchIndex, build_index
from core.search.warm import NullWarmer
from core.settings import Processing, Settings

from dashboard import config, state
from dashboard.builders import edit as edit_views
from dashboard.markup import plain


class _Slot:
    """Where one (model, processing, cache dir) analysis lives once loaded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.value: Analysis | None = None


@st.cache_resource(show_spinner=False, max_entries=4)
def _slot(model: str, processing: str, cache_dir: str) -> _Slot:
    # The slot, not the analysis, is the cached resource: loading happens outside the
    # cached function so that its progress bar is drawn live (cached functions record
    # and replay their elements) and a failed load is retried on the next run.
    return _Slot()


def _load(
    model: str, processing: str, cache_dir: str, progress: Callable[[float, str], None]
) -> Analysis:
    config.check_model(model)  # every load path, before a slot is made for it
    slot = _slot(model, processing, cache_dir)
    if slot.value is not None:
        return slot.value
    with slot.lock:  # one load per key even with many sessions waiting
        if slot.value is None:
            settings = Settings(
                model=model, processing=cast(Processing, processing), cache_dir=Path(cache_dir)
            )
            # A missing entry: the first directions now, the rest in the background
            # (core.cache.fill), logged rather than drawn (another thread, no page).
            slot.value = open_analysis(settings, progress, True, _log_progress(model))
    return slot.value


def _log_progress(model: str) -> Callable[[float, str], None]:
    log = logging.getLogger("dashboard.fill")

    def progress(fraction: float, message: str) -> None:
        log.info("%s: %s", model, message)

    return progress


def _quiet(fraction: float, message: str) -> None:
    # Cached functions run after the page's setup() loaded the analysis: no progress.
    pass


def get_analysis(model: str, processing: str) -> Analysis:
    """The shared analysis of ``model``; builds the cache entry if missing.

    Raises:
        CoreError: the model fails to load or the cache cannot be built.
    """
    cdir = str(config.cache_dir())
    config.check_model(model)
    slot = _slot(model, processing, cdir)
    if slot.value is not None:
        return slot.value
    holder = st.empty()
    bar: dict[str, Any] = {}
    interrupted: list[BaseException] = []

    def progress(fraction: float, message: str) -> None:
        if interrupted:
            return
        text = f"{model} ({processing}): {message}"
        f = min(max(float(fraction), 0.0), 1.0)
        try:
            if "bar" not in bar:
                bar["bar"] = holder.progress(f, text=text)
            else:
                bar["bar"].progress(f, text=text)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            # Streamlit stops or reruns a script by raising from its next element call.
            # The load is shared by every session: finish it, then let the stop/rerun
            # through, so a closed tab does not make the others start over.
            interrupted.append(exc)

    try:
        with st.spinner(f"Opening {model} ({processing})…"):
            a = _load(model, processing, cdir, progress)
    finally:
        if not interrupted:
            holder.empty()
    if interrupted:
        raise interrupted[0]
    return a


def analysis_or_error(sel: state.Selection) -> Analysis | None:
    """The analysis for ``sel``, or ``None`` after showing the error with ``st.error``."""
    name = sel.model if len(sel.model) <= 100 else sel.model[:99] + "…"
    try:
        return get_analysis(sel.model, sel.processing)
    except CoreError as exc:
        st.error(plain(f"Could not open model {name!r}: {exc}", 600))
    except (OSError, ValueError, RuntimeError) as exc:
        st.error(
            plain(
                f"Could not open model {name!r} ({type(exc).__name__}: {exc}); "
                "pick another model in the sidebar.",
                600,
            )
        )
    return None


def ensure_controls(a: Analysis, kind: str) -> bool:
    """Make sure ``kind``'s random control exists (drawn and decomposed once per model
    and kind, with a spinner; its directions are projected when shown). Shows
    ``st.error`` and returns ``False`` when it cannot be built."""
    if control_decomposition_ready(a, kind):
        return True
    try:
        with st.spinner("Drawing and decomposing this matrix kind's random control…"):
            control_result(a, kind)
    except (CoreError, OSError, RuntimeError) as exc:
        st.error(plain(f"Could not build the random control ({exc}); turn the control off."))
        return False
    return True


@st.cache_data(show_spinner="Building the view…", max_entries=512)
def _directions(
    model: str,
    processing: str,
    cache_dir: str,
    kind: str,
    layer: int,
    head: int | None,
    n: int,
    k: int,
    filters: tuple[str, ...],
    control: bool,
) -> list[Direction]:
    a = _load(model, processing, cache_dir, _quiet)
    return directions(a, kind, layer, head, n=n, k=k, filters=filters, control=control)


def component_directions(
    sel: state.Selection,
    n: int = 10,
    k: int = 20,
    filters: tuple[str, ...] = (),
    control: bool = False,
) -> list[Direction]:
    """The first ``n`` directions of the selected component (cached per arguments).

    Raises:
        CoreError: bad layer/head/kind for this model.
    """
    return _directions(
        sel.model,
        sel.processing,
        str(config.cache_dir()),
        sel.kind,
        sel.layer,
        sel.component_head,
        n,
        k,
        tuple(filters),
        control,
    )


def ensure_method(
    a: Analysis, method: str, kind: str, layer: int, control: bool = False
) -> Components | None:
    """``method``'s components of ``kind`` at ``layer``: read from the cache entry, or
    built now with a progress bar (seconds to a minute, once per option set). Shows
    ``st.error`` and returns ``None`` when they cannot be had."""
    bar = st.progress(0.0, text=f"Reading the {method} decomposition…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=message)

    try:
        return method_components(a, method, kind, layer, control, progress=progress)
    except CoreError as exc:
        st.error(plain(exc))
        return None
    finally:
        bar.empty()


@st.cache_data(show_spinner="Building the view…", max_entries=512)
def _method_directions(
    model: str,
    processing: str,
    cache_dir: str,
    method: str,
    kind: str,
    layer: int,
    n: int,
    k: int,
    filters: tuple[str, ...],
    control: bool,
) -> list[Direction]:
    a = _load(model, processing, cache_dir, _quiet)
    return method_directions(a, method, kind, layer, None, n, k, filters, control)


def method_component_directions(
    sel: state.Selection,
    method: str,
    n: int = 10,
    k: int = 20,
    filters: tuple[str, ...] = (),
    control: bool = False,
) -> list[Direction]:
    """The first ``n`` components of ``method`` for the selected matrix and layer (cached
    per arguments; call :func:`ensure_method` first so a build shows its progress).

    Raises:
        CoreError: the method does not read this matrix, or a bad layer.
    """
    return _method_directions(
        sel.model, sel.processing, str(config.cache_dir()), method, sel.kind, sel.layer,
        n, k, tuple(filters), control,
    )  # fmt: skip


def cached_table(name: str, sel: state.Selection, build: Callable[..., Any], *args: Any) -> Any:
    """A ``pd.DataFrame`` built once per (model, processing, name, args) by ``build``.

    ``build(analysis, *args)`` must be a module-level function (its qualified name keys
    the cache together with ``name`` and ``args``).
    """
    return _cached(name, sel, build, args, as_spec=False)


def cached_spec(name: str, sel: state.Selection, build: Callable[..., Any], *args: Any) -> Any:
    """The Vega-Lite dict of the ``alt.Chart`` that ``build(analysis, *args)`` returns,
    built once per (model, processing, name, args): Altair's construction and schema
    validation take a few hundred milliseconds, too slow for every rerun. Render it with
    ``st.vega_lite_chart(spec)``."""
    return _cached(name, sel, build, args, as_spec=True)


def _cached(
    name: str, sel: state.Selection, build: Callable[..., Any], args: tuple[Any, ...], as_spec: bool
) -> Any:
    key = f"{build.__module__}.{build.__qualname__}"
    cache = str(config.cache_dir())
    return _built(name, key, sel.model, sel.processing, cache, args, as_spec, _build=build)


@st.cache_data(show_spinner="Building the view…", max_entries=512)
def _built(
    name: str,
    builder: str,
    model: str,
    processing: str,
    cache_dir: str,
    args: tuple[Any, ...],
    as_spec: bool,
    _build: Callable[..., Any],
) -> Any:
    a = _load(model, processing, cache_dir, _quiet)
    out = _build(a, *args)
    # The builder tests validate these specs; validating again on every miss took 30 ms
    # a chart (7 ms without).
    return out.to_dict(validate=False) if as_spec else out


@st.cache_resource(show_spinner=False, max_entries=4)
def _model_preload(model: str, processing: str, cache_dir: str) -> ModelPreload:
    return ModelPreload(_load(model, processing, cache_dir, _quiet).source).start()


def preload_model(sel: state.Selection) -> None:
    """Start loading ``sel``'s model for a forward pass in the background, once per model
    and processing (a page that will need one calls this while its inputs are empty)."""
    _model_preload(sel.model, sel.processing, str(config.cache_dir()))


@st.cache_resource(show_spinner="Indexing every singular direction…", max_entries=2)
def _search_index(model: str, processing: str, cache_dir: str, generation: int = -1) -> SearchIndex:
    # One stacked, normalised matrix per model, shared read-only by every session.
    # ``generation`` counts the kinds a background fill has finished: the index is
    # rebuilt as they land (its thresholds read the filled ends).
    index = build_index(_load(model, processing, cache_dir, _quiet))
    if generation == -1 and config.warm_nulls():
        # A settled index: the significance nulls of the search page's default settings
        # are computed in the background, so a query of a common shape waits for none.
        index.memo["warmer"] = NullWarmer(index).start()
    return index


def _generation(model: str, processing: str, cache_dir: str) -> int:
    fill = _load(model, processing, cache_dir, _quiet).fill
    return -1 if fill is None or fill.done.is_set() else fill.generation


def search_index(sel: state.Selection) -> SearchIndex:
    """The search index of every direction of ``sel``'s model (built once per model and
    processing, shared by every session; the search and edit pages both read it)."""
    cdir = str(config.cache_dir())
    return _search_index(
        sel.model, sel.processing, cdir, _generation(sel.model, sel.processing, cdir)
    )


@st.cache_data(show_spinner="Finding the query's directions…", max_entries=128)
def _search_edit_spec(
    model: str,
    processing: str,
    cache_dir: str,
    query: str,
    threshold: float,
    top: int | None,
    generation: int,
) -> str:
    # ``generation`` keys the answer to the index it was read from: one cached during a
    # background fill is not served once the fill has rebuilt the index.
    index = _search_index(model, processing, cache_dir, generation)
    return edit_views.compute_search_spec(index, query, threshold, top)


def search_edit_spec(sel: state.Selection, search: state.LastSearch) -> str:
    """The edits removing every OV/MLP direction that ``search``'s query matches in
    :func:`search_index`, as an edit spec ('' if none); cached per query.

    Raises:
        CoreError: the query cannot be searched (one sentence).
    """
    cdir = str(config.cache_dir())
    return _search_edit_spec(
        sel.model,
        sel.processing,
        cdir,
        search.query,
        search.threshold,
        search.top,
        _generation(sel.model, sel.processing, cdir),
    )
