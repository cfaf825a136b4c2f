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
* :class:`LastSearch`: the search page's last query, which the edit page offers to
  remove (:func:`record_search`, :func:`last_search`).
* :class:`EditHistory`: the edit page's edits and their undo history
  (:func:`edit_history`, :func:`set_edit_history`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import streamlit as st
from core.edit import EditSet
from core.errors import SpecError
from core.model.loading import resolve_model
from core.settings import DEFAULT_CACHE_DIR, DEFAULT_MODEL_DIR, HEAD_KINDS, REPO_ROOT

from dashboard.builders.names import component_label
from dashboard.registry import page as registry_page

_FIELDS = ("model", "processing", "kind", "layer", "head", "direction")
_PENDING = "sel._pending"
_INIT = "sel._initialised"
_ERRORS = "sel._errors"


# --------------------------------------------------------------------- configuration


def default_model() -> str:
    """The model spec the app opens with: ``$SVDLENS_DEFAULT_MODEL`` or core's ``default``."""
    return os.environ.get("SVDLENS_DEFAULT_MODEL", "").strip() or "default"


def models_dir() -> Path:
    """Folder of local checkpoints offered in the model picker (``$SVDLENS_MODELS_DIR``)."""
    p = Path(os.environ.get("SVDLENS_MODELS_DIR", "").strip() or "models")
    return p if p.is_absolute() else REPO_ROOT / p


def cache_dir() -> Path:
    """Root of the SVD cache (``$SVDLENS_CACHE_DIR``, else core's default ``cache/``)."""
    p = os.environ.get("SVDLENS_CACHE_DIR", "").strip()
    return Path(p) if p else DEFAULT_CACHE_DIR


def local_models() -> list[str]:
    """Checkpoint directories (with a ``config.json``) directly under :func:`models_dir`."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(str(d) for d in root.iterdir() if (d / "config.json").is_file())


def allow_hub() -> bool:
    """Whether visitors may open Hugging Face hub ids (``$SVDLENS_ALLOW_HUB=1``; off by
    default: a shared link could otherwise make the server download any model)."""
    return os.environ.get("SVDLENS_ALLOW_HUB", "").strip().lower() in ("1", "true", "yes")


def check_model(spec: str) -> None:
    """Refuse a model spec the dashboard must not open.

    The dashboard opens the embedded models (folders of ``models/`` in the repository),
    checkpoints under :func:`models_dir`, the operator's :func:`default_model`, and hub
    ids only when :func:`allow_hub`. The CLI has no such limit.

    Raises:
        SpecError: one sentence naming what is allowed (the spec itself is not echoed,
            and whether a path exists is not revealed).
    """
    if spec in ("", "default") or spec == default_model():
        return
    roots = [DEFAULT_MODEL_DIR.parent, models_dir()]
    try:
        path = Path(spec).expanduser()
        # A hub id is "owner/name": anything else with a slash, or a "..", is a path.
        looks_like_path = (
            path.is_absolute()
            or spec.startswith((".", "~"))
            or ".." in path.parts
            or spec.count("/") > 1
            or "\\" in spec
        )
        if not (looks_like_path or path.exists()):
            source = resolve_model(spec)  # an embedded model's name resolves to its folder
            if not Path(source).is_dir():
                if allow_hub():
                    return
                raise SpecError(
                    "Hugging Face ids are off in this dashboard; pick a model in the sidebar, "
                    f"put the checkpoint under {models_dir()}, or serve with SVDLENS_ALLOW_HUB=1."
                )
            path = Path(source)
        # Normalised, not resolved: ".." cannot climb out, but a symlink the operator put
        # in the models folder is honoured.
        where = Path(os.path.abspath(path))
        if any(where == r or r in where.parents for r in map(Path, map(os.path.abspath, roots))):
            return
    except OSError:  # a name too long for the file system, say: refused like any other
        pass
    raise SpecError(
        "The dashboard opens only its embedded models and checkpoints under "
        f"{models_dir()} (SVDLENS_MODELS_DIR); pick one in the sidebar."
    )


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
    model = params.get("model") or default_model()
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
        sel, errors = from_params(st.query_params)
        for f in _FIELDS:
            ss[f"sel.{f}"] = getattr(sel, f)
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


def set_now(**changes: Any) -> None:
    """Change the selection in place: only from widget callbacks or before the sidebar."""
    for f, v in changes.items():
        if f not in _FIELDS:
            raise ValueError(f"unknown selection field {f!r}")
        st.session_state[f"sel.{f}"] = v


def request(**changes: Any) -> None:
    """Change the selection at the start of the next run (safe anywhere), then rerun
    yourself (``st.rerun()``) or switch page."""
    for f in changes:
        if f not in _FIELDS:
            raise ValueError(f"unknown selection field {f!r}")
    pending = dict(st.session_state.get(_PENDING) or {})
    pending.update(changes)
    st.session_state[_PENDING] = pending


def sync_url(sel: Selection) -> None:
    """Write ``sel`` to ``st.query_params`` when it differs (keeps the URL shareable)."""
    want = sel.to_params()
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
) -> None:
    """Open a component on another page (a key of :data:`dashboard.registry.PAGES`;
    default: the cluster grid) and stop this run.

    ``direction`` is a singular direction index the target page highlights.
    """
    sel = replace(
        current(),
        kind=kind,
        layer=layer,
        head=head if kind in HEAD_KINDS else None,
        direction=direction,
    )
    if model is not None:
        sel = replace(sel, model=model)
    if processing is not None:
        sel = replace(sel, processing=processing)
    request(**asdict(sel))
    st.switch_page(registry_page(page).script, query_params=sel.to_params())


# ------------------------------------------------------------- values between pages

_LAST_SEARCH = "state.last_search"
_EDIT_HISTORY = "state.edit_history"


@dataclass(frozen=True)
class LastSearch:
    """A query the search page ran, for the edit page's "remove all matches".

    Attributes:
        model, processing: what it searched (the edit page ignores it for another model).
        query: the comma-separated concepts.
        threshold: the least ``|cosine|`` of a match.
        top: the most matches kept, best first (``None``: all).
    """

    model: str
    processing: str
    query: str
    threshold: float
    top: int | None


def record_search(search: LastSearch | None) -> None:
    """Remember ``search`` as this session's last query (``None``: forget it)."""
    st.session_state[_LAST_SEARCH] = search


def last_search(sel: Selection) -> LastSearch | None:
    """This session's last query on ``sel``'s model and processing, if any."""
    s = st.session_state.get(_LAST_SEARCH)
    if isinstance(s, LastSearch) and (s.model, s.processing) == (sel.model, sel.processing):
        return s
    return None


@dataclass(frozen=True)
class EditHistory:
    """The edit sets a session has had, oldest first; the last is current.

    ``model`` and ``processing`` say what the indices refer to: edits made under one
    processing mean other directions under the other, so a change of either resets.
    """

    model: str
    processing: str
    states: tuple[EditSet, ...] = (EditSet(),)

    @property
    def current(self) -> EditSet:
        return self.states[-1]

    def push(self, edits: EditSet) -> EditHistory:
        """A history with ``edits`` as the new current set (no-op if unchanged)."""
        if edits == self.current:
            return self
        return EditHistory(self.model, self.processing, (*self.states, edits))

    def undo(self) -> EditHistory:
        """The history one step back (the first, empty state stays)."""
        return EditHistory(self.model, self.processing, self.states[:-1] or (EditSet(),))

    def reset(self) -> EditHistory:
        """Back to no edits (one step, so it can be undone too)."""
        return self.push(EditSet())

    def matches(self, model: str, processing: str) -> bool:
        return (self.model, self.processing) == (model, processing)


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
    """Make ``history`` this session's edit history."""
    st.session_state[_EDIT_HISTORY] = history
