"""Shared UI pieces: the sidebar every page draws, and small helpers pages reuse.

:func:`setup` (every page's first call; see dashboard/registry.py) draws the sidebar
(model, processing, matrix kind, layer, head), validates the selection against the
model, writes it to the URL, and stops the page (after an ``st.error``) when the model
cannot be opened; the sidebar stays usable.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import streamlit as st
from core.analysis import Analysis
from core.errors import CoreError
from core.model import embedded
from core.query import check_component
from core.settings import BLOCK_NAMES, HEAD_KINDS

from dashboard import config, loaders, state
from dashboard.markup import plain


def available_kinds(a: Analysis) -> list[str]:
    """Matrix kinds this model has and its cache entry holds, in display order."""
    return [k for k in a.kinds() if k in a.svd.kinds]


def _model_label(spec: str) -> str:
    m = embedded.lookup(spec)
    if m is not None:
        name = spec if spec == m.name else f"{spec} = {m.name}"
        return f"{name} ({m.title})" + ("" if m.built else ", not built: run make install")
    p = Path(spec)
    if p.is_absolute() and p.parent == config.models_dir():
        return f"{p.name} (local)"
    return spec


def model_options(current: str) -> list[str]:
    """The picker's models: the app's default, every embedded model, the checkpoint
    folders under the models directory that are not embedded ones, and ``current``."""
    options = [config.default_model()]
    first = embedded.lookup(options[0])
    options += [m.name for m in embedded.EMBEDDED if m is not first]
    options += [p for p in config.local_models() if embedded.lookup(p) is None]
    return options if current in options else [*options, current]


def _bound(
    widget: Callable[..., Any],
    label: str,
    name: str,
    options: Sequence[Any],
    clear_direction: bool = True,
    **kw: Any,
) -> Any:
    """A widget mirroring ``sel.<name>``: survives pages that don't draw it."""
    wkey = f"w.{name}"
    st.session_state[wkey] = getattr(state.current(), name)

    def changed() -> None:
        state.set_now(**{name: st.session_state[wkey]})
        if clear_direction:
            state.set_now(direction=None)

    return widget(label, options, key=wkey, on_change=changed, **kw)


def validate(sel: state.Selection, a: Analysis) -> tuple[state.Selection, list[str]]:
    """``sel`` made valid for ``a`` (nearest valid values), with a message per fix."""
    errors: list[str] = []
    kinds = available_kinds(a)
    kind, layer, head = sel.kind, sel.layer, sel.head
    try:
        check_component(a.meta, kind, 0, 0 if kind in HEAD_KINDS else None, "mlp_gate" in kinds)
        if kind not in kinds:
            raise CoreError(f"{kind} is not in this model's cache entry; pick another matrix.")
    except CoreError as exc:
        errors.append(str(exc))
        kind = kinds[0]
    if kind in HEAD_KINDS:
        head = 0 if head is None else head
    else:
        head = None
    n_layers = 1 if kind == "embed" else a.meta.n_layers
    try:
        check_component(a.meta, kind, layer, head, "mlp_gate" in kinds)
    except CoreError as exc:
        errors.append(str(exc).replace("--head", "a head"))
        layer = min(max(layer, 0), n_layers - 1)
        if head is not None:
            head = min(max(head, 0), a.meta.n_heads - 1)
    direction = sel.direction
    rank = a.svd.kinds[kind].decomposition.rank
    if direction is not None and not 0 <= direction < rank:
        errors.append(f"Direction {direction} is out of range; this matrix has 0 to {rank - 1}.")
        direction = None
    fixed = state.Selection(sel.model, sel.processing, kind, layer, head, direction)
    return fixed, errors


_FIRST_HEAD = "sel._first_head_checked"


def _first_head(sel: state.Selection, a: Analysis) -> state.Selection:
    """``sel`` moved to the model's opening head when its registry entry asks for one
    (see core/label/first_head.py for the measure); unchanged on any failure."""
    entry = embedded.lookup(sel.model) or embedded.by_directory(sel.model)
    if entry is None or not entry.first_head or "ov" not in available_kinds(a):
        return sel
    from core.label.first_head import first_head

    try:
        with st.spinner("Choosing the head to open on (once per model) ..."):
            choice = first_head(a)
    except CoreError:
        return sel
    return replace(sel, kind="ov", layer=choice.layer, head=choice.head, direction=None)


def sidebar() -> tuple[state.Selection, Analysis | None]:
    """Draw the shared sidebar and return the (validated) selection and its analysis.

    The analysis is ``None`` when the model failed to load (the error is on the page).
    """
    state.init()
    for msg in state.take_url_errors():
        st.error(plain(msg))
    # A session that starts without a component in its URL may open on a chosen head.
    # The flag is set only once the choice is made: a first run stopped earlier (a
    # click on the page list while it loads) would otherwise leave the session on L0 H0.
    first_run = not st.session_state.get(_FIRST_HEAD)
    choose_head = first_run and not any(p in st.query_params for p in ("kind", "layer", "head"))
    sel = state.current()
    with st.sidebar:
        st.subheader("Model")
        _bound(
            st.selectbox,
            "Model",
            "model",
            model_options(sel.model),
            format_func=_model_label,
            accept_new_options=True,
            help=(
                "An embedded model (demo-gpt2 answers at once; smollm2-135m is a real "
                "pretrained model, built by make install) or a checkpoint folder under "
                f"{config.models_dir()} (set SVDLENS_MODELS_DIR); type its path and press "
                "Enter" + (", or a Hugging Face id." if config.allow_hub() else ".")
            ),
        )
        _bound(
            st.radio,
            "Processing",
            "processing",
            ["post", "raw"],
            horizontal=True,
            help="post: normalisation scales folded into the reading matrices (as in the "
            "post); raw: weights as stored.",
        )
    sel = state.current()
    a = loaders.analysis_or_error(sel)
    if a is None:
        st.session_state[_FIRST_HEAD] = True
        state.sync_url(sel)
        return sel, None
    sel, errors = validate(sel, a)
    for msg in errors:
        st.error(plain(msg))
    if choose_head:
        sel = _first_head(sel, a)
    state.set_now(kind=sel.kind, layer=sel.layer, head=sel.head, direction=sel.direction)
    st.session_state[_FIRST_HEAD] = True
    with st.sidebar:
        st.subheader("Matrix")
        _bound(
            st.selectbox,
            "Matrix kind",
            "kind",
            available_kinds(a),
            format_func=lambda k: BLOCK_NAMES.get(k, k),
        )
        if sel.kind != "embed":
            _bound(st.selectbox, "Layer", "layer", list(range(a.meta.n_layers)))
        if sel.kind in HEAD_KINDS:
            _bound(st.selectbox, "Head", "head", list(range(a.meta.n_heads)))
        st.caption(
            f"Showing **{sel.label()}** of {plain(_model_label(sel.model), 100)} ({sel.processing})."
        )
    state.sync_url(sel)
    return sel, a


def setup(require_analysis: bool = True) -> tuple[state.Selection, Analysis]:
    """Draw the shared sidebar; return the validated selection and the shared analysis.

    With ``require_analysis`` (the default) the page stops here when the model cannot
    be opened; otherwise the analysis may be ``None``.
    """
    sel, a = sidebar()
    if a is None and require_analysis:
        st.info("Pick a model that loads in the sidebar to see this page.")
        st.stop()
    return sel, a  # type: ignore[return-value]


def timed_run(page: Any) -> None:
    """Run ``page`` (an ``st.navigation`` page); with ``$SVDLENS_TIMING_LOG`` set, append
    ``{"page", "seconds", "pid"}`` as a JSON line there (for scripts/load_test.py)."""
    log = os.environ.get("SVDLENS_TIMING_LOG")
    if not log:
        page.run()
        return
    t = time.perf_counter()
    try:
        page.run()
    finally:
        line = {"page": page.title, "seconds": time.perf_counter() - t, "pid": os.getpid()}
        with open(log, "a") as f:
            f.write(json.dumps(line) + "\n")


def step_buttons(sel: state.Selection, a: Analysis, key: str = "step") -> None:
    """Previous/next head and layer buttons (one click each, via callbacks)."""

    def go(layer: int, head: int | None) -> None:
        state.set_now(layer=layer, head=head, direction=None)

    n_layers = 1 if sel.kind == "embed" else a.meta.n_layers
    cols = st.columns(4)
    if sel.kind in HEAD_KINDS and sel.head is not None:
        cols[0].button(
            "◀ head",
            key=f"{key}.prev_head",
            disabled=sel.head <= 0,
            on_click=go,
            args=(sel.layer, sel.head - 1),
            width="stretch",
        )
        cols[1].button(
            "head ▶",
            key=f"{key}.next_head",
            disabled=sel.head >= a.meta.n_heads - 1,
            on_click=go,
            args=(sel.layer, sel.head + 1),
            width="stretch",
        )
    cols[2].button(
        "◀ layer",
        key=f"{key}.prev_layer",
        disabled=sel.layer <= 0,
        on_click=go,
        args=(sel.layer - 1, sel.head),
        width="stretch",
    )
    cols[3].button(
        "layer ▶",
        key=f"{key}.next_layer",
        disabled=sel.layer >= n_layers - 1,
        on_click=go,
        args=(sel.layer + 1, sel.head),
        width="stretch",
    )


def method_selector(page_key: str, container: Any = None) -> str:
    """The **Method** selector (svd, dictionary, nmf, ica) the grid and the atlas share:
    its widget ``<page_key>.method`` starts from, and writes back to, the typed
    :func:`state.method_view` (in the URL as ``decomp=``). Returns the method."""
    from core.decompose import METHOD_MATRICES, METHOD_NAMES, METHODS
    from core.settings import KIND_NAMES

    key = f"{page_key}.method"
    state.seed({key: state.method_view().method})
    where = container if container is not None else st
    method = where.selectbox(
        "Method",
        list(METHODS),
        format_func=METHOD_NAMES.__getitem__,
        key=key,
        help="svd: the singular directions. "
        + " ".join(
            f"{METHOD_NAMES[m]}: {', '.join(KIND_NAMES[k] for k in kinds)}."
            for m, kinds in METHOD_MATRICES.items()
        )
        + " Built on first use (seconds to a minute) and cached beside the SVD.",
    )
    if method != state.method_view().method:
        state.set_method_view(state.MethodView(method))
    return str(method)


def job_result(job: Any, what: str) -> Any:
    """A background job's result once it is done (a :class:`core.background.ProgressJob`).

    While it runs, its progress bar is drawn and redrawn every second, and the page
    reruns when it ends; a failed job shows one sentence (``what`` names the work).
    ``None`` until there is a result.
    """
    if not job.done.is_set():
        running = job

        @st.fragment(run_every=1.0)
        def _progress() -> None:
            if running.done.is_set():
                st.rerun()
            st.progress(min(1.0, running.fraction), text=plain(running.message))

        _progress()
        return None
    if job.error is not None:
        if isinstance(job.error, CoreError):
            st.error(plain(job.error))
        else:
            st.error(plain(f"{what} failed ({job.error}); press its button to try again."))
        return None
    return job.result
