"""Typed session state: the shared selection and its URL, and the values pages hand to
each other. This module owns every ``st.session_state`` key that more than one page uses.

* :class:`Selection` (model, processing, matrix kind, layer, head, direction): the
  canonical values live under ``sel.<name>`` keys (plain keys, not widget keys, so they
  survive pages that don't draw the sidebar widgets). The sidebar
  (:func:`dashboard.components.setup`, called by every page) mirrors them into its
  widgets and writes them to ``st.query_params`` on every run, so a view is a shareable
  URL and survives a reload. Code that runs after the sidebar's widgets exist must not
  set their keys; it calls :func:`request` (applied at the start of the next run) or
  :func:`open_component` instead.
* The view options (:mod:`dashboard.viewstate`): the grid's (:func:`grid_view`), the
  spectra overlay (:func:`spectra_view`), the decomposition the grid and atlas show
  (:func:`method_view`), the Prompt page's inputs (:func:`prompt_view`), the last search
  (:class:`LastSearch`,
  :func:`record_search`, :func:`last_search`), and the edit set
  (:class:`EditHistory`, :func:`edit_history`, :func:`set_edit_history`). They are
  seeded from the URL on a session's first run and written back to it with the
  selection (:func:`url_params`), so a link reproduces the whole view, edits included.
  Pages seed their widgets from them (:func:`seed`), because Streamlit forgets the
  state of a widget that a run did not draw (another page's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import streamlit as st
from core.edit import EditSet
from core.errors import CoreError
from core.model import embedded
from core.settings import HEAD_KINDS

from dashboard.builders.names import component_label
from dashboard.config import default_model
from dashboard.registry import page as registry_page
from dashboard.viewstate import (
    EditHistory,
    GridView,
    LastSearch,
    MeasureView,
    MethodView,
    PromptView,
    SearchQuery,
    SpectraView,
)

_FIELDS = ("model", "processing", "kind", "layer", "head", "direction")
_PENDING = "sel._pending"
_INIT = "sel._initialised"
_ERRORS = "sel._errors"


# ------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """What the user is looking at.

    Attributes:
        model: model spec as core takes it (``default``, a hub id, a directory).
        processing: ``post`` or ``raw``.
        kind: matrix kind (``ov``, ``qk``, ``mlp_in``, ``mlp_gate``, ``mlp_out``, ``embed``).
        layer: layer index (0 for the embedding).
        head: head index for OV/QK, else ``None``.
        direction: a singular direction index to highlight (from search/edit), or ``None``.
    """

    model: str
    processing: str = "post"
    kind: str = "ov"
    layer: int = 0
    head: int | None = 0
    direction: int | None = None

    @property
    def has_head(self) -> bool:
        return self.kind in HEAD_KINDS

    @property
    def component_head(self) -> int | None:
        """``head`` for head kinds, ``None`` otherwise (what core's queries take)."""
        return self.head if self.kind in HEAD_KINDS else None

    def label(self) -> str:
        """Short human name, e.g. ``L3 H5 OV`` or ``L2 MLP out``."""
        return component_label(self.kind, self.layer, self.component_head)

    def to_params(self) -> dict[str, str]:
        """The URL query parameters for this selection."""
        out = {"model": self.model, "proc": self.processing, "kind": self.kind}
        out["layer"] = str(self.layer)
        if self.kind in HEAD_KINDS and self.head is not None:
            out["head"] = str(self.head)
        if self.direction is not None:
            out["dir"] = str(self.direction)
        return out


def _int_param(params: Any, name: str, label: str, errors: list[str]) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        errors.append(f"The URL's {label} {raw!r} is not a whole number; showing 0 instead.")
        return 0


def from_params(params: Any) -> tuple[Selection, list[str]]:
    """A selection from URL query parameters (unchecked against a model), with messages
    for values that could not even be parsed."""
    errors: list[str] = []
    # A URL or a typed path written another way names the same model (one cache entry).
    model = embedded.spec_name(params.get("model") or default_model())
    proc = params.get("proc") or "post"
    if proc not in ("post", "raw"):
        errors.append(f"The URL's processing {proc!r} is unknown; use post or raw.")
        proc = "post"
    kind = params.get("kind") or "ov"
    layer = _int_param(params, "layer", "layer", errors)
    head = _int_param(params, "head", "head", errors)
    direction = _int_param(params, "dir", "direction", errors)
    sel = Selection(
        model=model,
        processing=proc,
        kind=kind,
        layer=0 if layer is None else layer,
        head=(0 if head is None else head) if kind in HEAD_KINDS else None,
        direction=direction,
    )
    return sel, errors


def init() -> None:
    """Seed the session's selection from the URL on its first run (idempotent)."""
    ss = st.session_state
    if not ss.get(_INIT):
        params = {k: st.query_params.get(k) for k in st.query_params}
        sel, errors = from_params(params)
        for f in _FIELDS:
            ss[f"sel.{f}"] = getattr(sel, f)
        _views_from_params(sel, params, errors)
        ss[_ERRORS] = errors
        ss[_INIT] = True
    pending = ss.pop(_PENDING, None)
    if pending:
        for f, v in pending.items():
            ss[f"sel.{f}"] = v


def take_url_errors() -> list[str]:
    """Messages about unparseable URL parameters (shown once)."""
    return st.session_state.pop(_ERRORS, []) or []


def current() -> Selection:
    """The current selection (seeded from the URL on the session's first run)."""
    ss = st.session_state
    if not ss.get(_INIT):
        init()
    return Selection(**{f: ss.get(f"sel.{f}") for f in _FIELDS})  # type: ignore[arg-type]


def _checked(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` to the selection, the model named as the command line names it (one
    cache entry however its folder is written).

    Raises:
        ValueError: a field the selection does not have.
    """
    for f in changes:
        if f not in _FIELDS:
            raise ValueError(f"unknown selection field {f!r}")
    if "model" in changes:
        return {**changes, "model": embedded.spec_name(changes["model"])}
    return changes


def set_now(**changes: Any) -> None:
    """Change the selection in place: only from widget callbacks or before the sidebar."""
    for f, v in _checked(changes).items():
        st.session_state[f"sel.{f}"] = v


def request(**changes: Any) -> None:
    """Change the selection at the start of the next run (safe anywhere), then rerun
    yourself (``st.rerun()``) or switch page."""
    pending = dict(st.session_state.get(_PENDING) or {})
    pending.update(_checked(changes))
    st.session_state[_PENDING] = pending


def url_params(sel: Selection) -> dict[str, str]:
    """The whole view as URL parameters: ``sel``, the grid and spectra options, the last
    search and the edit set (the last two only when they belong to ``sel``'s model and
    processing)."""
    ss = st.session_state
    out = sel.to_params()
    out.update(grid_view().to_params())
    out.update(method_view().to_params())
    out.update(spectra_view().to_params())
    out.update(measure_view().to_params())
    out.update(prompt_view().to_params())
    search = last_search(sel)
    if search is not None:
        out.update(search.spec.to_params())
    h = ss.get(_EDIT_HISTORY)
    if isinstance(h, EditHistory) and h.matches(sel.model, sel.processing) and len(h.current):
        out["edits"] = h.current.spec()
    return out


def sync_url(sel: Selection | None = None) -> None:
    """Write the view (:func:`url_params` of ``sel``, default the current selection) to
    ``st.query_params`` when it differs (keeps the URL shareable)."""
    want = url_params(current() if sel is None else sel)
    have = {k: st.query_params.get(k) for k in st.query_params}
    if have != want:
        st.query_params.from_dict(want)


def open_component(
    kind: str,
    layer: int,
    head: int | None = None,
    direction: int | None = None,
    page: str = "grid",
    model: str | None = None,
    processing: str | None = None,
    end: str | None = None,
) -> None:
    """Open a component on another page (a key of :data:`dashboard.registry.PAGES`;
    default: the cluster grid) and stop this run.

    ``direction`` is a singular direction index the target page highlights; ``end``
    (``top``/``bottom``) the grid end to show, e.g. the bottom one for an antipodal hit
    (a grid showing both ends keeps showing both).
    """
    sel = replace(
        current(),
        kind=kind,
        layer=layer,
        head=head if kind in HEAD_KINDS else None,
        direction=direction,
    )
    if model is not None:
        sel = replace(sel, model=embedded.spec_name(model))
    if processing is not None:
        sel = replace(sel, processing=processing)
    request(**asdict(sel))
    if end is not None and grid_view().end != "both":
        set_grid_view(replace(grid_view(), end=end))
    st.switch_page(registry_page(page).script, query_params=url_params(sel))


# ------------------------------------------------------------- values between pages

_LAST_SEARCH = "state.last_search"
_EDIT_HISTORY = "state.edit_history"
_GRID = "state.grid_view"
_SPECTRA = "state.spectra_view"
_MEASURE = "state.measure_view"
_PROMPT = "state.prompt_view"
_METHOD = "state.method_view"


def seed(values: dict[str, Any]) -> None:
    """Give each widget key in ``values`` that value unless the widget already has one
    (a page calls this before drawing its widgets, with values from its typed state)."""
    for key, value in values.items():
        if key not in st.session_state:
            st.session_state[key] = value


def grid_view() -> GridView:
    """The cluster grid's options (from the URL at first, then as last set)."""
    v = st.session_state.get(_GRID)
    return v if isinstance(v, GridView) else GridView()


def set_grid_view(view: GridView) -> None:
    """Remember the grid's options (and write them to the URL)."""
    st.session_state[_GRID] = view
    sync_url()


def method_view() -> MethodView:
    """The decomposition the grid and the atlas show (``svd`` unless chosen)."""
    v = st.session_state.get(_METHOD)
    return v if isinstance(v, MethodView) else MethodView()


def set_method_view(view: MethodView) -> None:
    """Remember the decomposition the grid and the atlas show (and write it to the URL)."""
    st.session_state[_METHOD] = view
    sync_url()


def measure_view() -> MeasureView:
    """The edit page's prompt, target and continuation length."""
    v = st.session_state.get(_MEASURE)
    return v if isinstance(v, MeasureView) else MeasureView()


def set_measure_view(view: MeasureView) -> None:
    """Remember the edit page's measurement inputs (and write them to the URL)."""
    st.session_state[_MEASURE] = view
    sync_url()


def prompt_view() -> PromptView:
    """The Prompt page's prompt, target, chosen position and layer."""
    v = st.session_state.get(_PROMPT)
    return v if isinstance(v, PromptView) else PromptView()


def set_prompt_view(view: PromptView) -> None:
    """Remember the Prompt page's inputs (and write them to the URL)."""
    st.session_state[_PROMPT] = view
    sync_url()


def spectra_view() -> SpectraView:
    """The spectra page's options."""
    v = st.session_state.get(_SPECTRA)
    return v if isinstance(v, SpectraView) else SpectraView()


def set_spectra_view(view: SpectraView) -> None:
    """Remember the spectra page's options (and write them to the URL)."""
    st.session_state[_SPECTRA] = view
    sync_url()


def record_search(search: LastSearch | None) -> None:
    """Remember ``search`` as this session's last query (``None``: forget it) and write
    it to the URL."""
    st.session_state[_LAST_SEARCH] = search
    sync_url()


def search_query() -> SearchQuery:
    """The last query's words and options, whatever model it ran on (the search page's
    widgets start from them); an empty query when there was none."""
    s = st.session_state.get(_LAST_SEARCH)
    return s.spec if isinstance(s, LastSearch) else SearchQuery()


def last_search(sel: Selection) -> LastSearch | None:
    """This session's last query on ``sel``'s model and processing, if any."""
    s = st.session_state.get(_LAST_SEARCH)
    if isinstance(s, LastSearch) and (s.model, s.processing) == (sel.model, sel.processing):
        return s if s.query.strip() else None
    return None


def _views_from_params(sel: Selection, params: dict[str, Any], errors: list[str]) -> None:
    """Seed the view options, the last search and the edit set from the URL."""
    ss = st.session_state
    ss[_GRID] = GridView.from_params(params, errors)
    ss[_SPECTRA] = SpectraView.from_params(params, errors)
    ss[_METHOD] = MethodView.from_params(params, errors)
    ss[_MEASURE] = MeasureView.from_params(params, errors)
    ss[_PROMPT] = PromptView.from_params(params, errors)
    query = SearchQuery.from_params(params, errors)
    if query.query:
        ss[_LAST_SEARCH] = LastSearch(sel.model, sel.processing, query)
    spec = str(params.get("edits") or "")
    if spec:
        try:
            edits = EditSet.parse(spec)
        except CoreError as exc:
            errors.append(f"The URL's edits could not be read ({exc}); starting without edits.")
        else:
            ss[_EDIT_HISTORY] = EditHistory(sel.model, sel.processing).push(edits)


def edit_history(sel: Selection) -> tuple[EditHistory, int]:
    """This session's edit history for ``sel``'s model and processing, and how many
    edits were dropped to get it (a history of another model or processing is replaced
    by an empty one: its indices mean other directions)."""
    h = st.session_state.get(_EDIT_HISTORY)
    if isinstance(h, EditHistory) and h.matches(sel.model, sel.processing):
        return h, 0
    dropped = len(h.current) if isinstance(h, EditHistory) else 0
    h = EditHistory(sel.model, sel.processing)
    st.session_state[_EDIT_HISTORY] = h
    return h, dropped


def set_edit_history(history: EditHistory) -> None:
    """Make ``history`` this session's edit history (its current set goes to the URL)."""
    st.session_state[_EDIT_HISTORY] = history
    sync_url()
