"""Typed view options that pages hand to each other, and their URL form (no Streamlit).

:mod:`dashboard.state` keeps one value of each class in the session and writes them to
the URL beside the :class:`~dashboard.state.Selection`, so a shared link reproduces the
whole view: the grid's options (:class:`GridView`), the spectra overlay
(:class:`SpectraView`), the Prompt page's inputs (:class:`PromptView`), the last search (:class:`SearchQuery`, kept with the model it
ran on as :class:`LastSearch`) and the edit set (:class:`EditHistory`; its current
spec in the URL as ``edits=``). Each ``to_params`` writes only values that differ from the default,
so a plain view keeps a short URL; each ``from_params`` reads what it can and appends one
sentence per unreadable value to ``errors`` (the value then falls back to its default).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.decompose import METHODS as DECOMPOSITIONS
from core.edit import EditSet
from core.search.embed import DEFAULT_METHOD, METHODS
from core.search.engine import DEFAULT_THRESHOLD, DEFAULT_TOP
from core.svd.project import TOKEN_FILTERS

#: The grid's ends, in the order its radio shows them.
GRID_ENDS = ("top", "bottom", "both")
GRID_FILTERS = TOKEN_FILTERS
SPECTRA_OVERLAYS = ("component", "heads", "layers")


def _int(params: Mapping[str, Any], name: str, default: int, lo: int, hi: int,
         errors: list[str]) -> int:  # fmt: skip
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        v = int(raw)
    except ValueError:
        errors.append(f"The URL's {name}={raw!r} is not a whole number; using {default}.")
        return default
    if not lo <= v <= hi:
        errors.append(f"The URL's {name}={v} is outside {lo}..{hi}; using {default}.")
        return default
    return v


def _choice(params: Mapping[str, Any], name: str, options: tuple[str, ...], default: str,
            errors: list[str]) -> str:  # fmt: skip
    raw = params.get(name)
    if raw in (None, ""):
        return default
    if raw not in options:
        errors.append(f"The URL's {name}={raw!r} is unknown; use one of {', '.join(options)}.")
        return default
    return str(raw)


def _list(raw: Any) -> tuple[str, ...]:
    return tuple(p for p in str(raw or "").split(",") if p)


@dataclass(frozen=True)
class GridView:
    """The cluster grid's options.

    Attributes:
        end: ``top`` (positive end), ``bottom`` (negative end) or ``both``.
        n: how many directions, by singular value.
        k: tokens per direction.
        filters: token filters (:data:`core.svd.tokens.TOKEN_FILTERS`).
        control: show the random control instead of the weights.
    """

    end: str = "top"
    n: int = 10
    k: int = 15
    filters: tuple[str, ...] = ()
    control: bool = False

    def to_params(self) -> dict[str, str]:
        """URL parameters ``end``, ``n``, ``k``, ``filters``, ``control`` (non-defaults)."""
        out: dict[str, str] = {}
        if self.end != "top":
            out["end"] = self.end
        if self.n != 10:
            out["n"] = str(self.n)
        if self.k != 15:
            out["k"] = str(self.k)
        if self.filters:
            out["filters"] = ",".join(self.filters)
        if self.control:
            out["control"] = "1"
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> GridView:
        """The grid options in ``params`` (defaults for missing or bad values)."""
        filters = _list(params.get("filters"))
        bad = [f for f in filters if f not in GRID_FILTERS]
        if bad:
            errors.append(
                f"The URL's token filter {bad[0]!r} is unknown; use {', '.join(GRID_FILTERS)}."
            )
        return cls(
            end=_choice(params, "end", GRID_ENDS, "top", errors),
            n=_int(params, "n", 10, 1, 100_000, errors),
            k=_int(params, "k", 15, 3, 100, errors),
            filters=tuple(f for f in filters if f in GRID_FILTERS),
            control=params.get("control") in ("1", "true"),
        )


@dataclass(frozen=True)
class MethodView:
    """The decomposition the grid and the atlas show: ``svd`` (default), ``dictionary``,
    ``nmf`` or ``ica`` (:data:`core.decompose.METHODS`). URL parameter ``decomp`` (the
    search's ``method`` is another thing)."""

    method: str = "svd"

    def to_params(self) -> dict[str, str]:
        """URL parameter ``decomp`` (when not ``svd``)."""
        return {} if self.method == "svd" else {"decomp": self.method}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> MethodView:
        """The decomposition in ``params``."""
        return cls(_choice(params, "decomp", DECOMPOSITIONS, "svd", errors))


@dataclass(frozen=True)
class SpectraView:
    """The spectra page's options: ``overlay`` is ``component``, ``heads`` or ``layers``."""

    overlay: str = "component"

    def to_params(self) -> dict[str, str]:
        """URL parameter ``overlay`` (when not ``component``)."""
        return {} if self.overlay == "component" else {"overlay": self.overlay}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> SpectraView:
        """The spectra options in ``params``."""
        return cls(_choice(params, "overlay", SPECTRA_OVERLAYS, "component", errors))


@dataclass(frozen=True)
class MeasureView:
    """What the edit page measures the edits on.

    Attributes:
        prompt: the prompt ('' when none).
        target: the target text whose log-probability is measured (spaces matter).
        max_new: how many tokens the greedy continuations add.
    """

    prompt: str = ""
    target: str = ""
    max_new: int = 20

    def to_params(self) -> dict[str, str]:
        """URL parameters ``prompt``, ``target``, ``new`` (non-defaults)."""
        out: dict[str, str] = {}
        if self.prompt:
            out["prompt"] = self.prompt
        if self.target:
            out["target"] = self.target
        if self.max_new != 20:
            out["new"] = str(self.max_new)
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> MeasureView:
        """The measurement inputs in ``params``."""
        return cls(
            prompt=str(params.get("prompt") or ""),
            target=str(params.get("target") or ""),
            max_new=_int(params, "new", 20, 0, 64, errors),
        )


#: What the Prompt page's heatmap colours.
PROMPT_SHOW = ("rank", "prob")
#: The longest prompt a URL may carry, in characters (the lens caps tokens too).
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class PromptView:
    """The Prompt page's inputs.

    Attributes:
        prompt: the text run through the model ('' when none).
        target: a token to rank at every position ('': each position's next token).
        position: the position whose active directions are shown (``None``: the last).
        layer: the block whose directions are shown (``None``: the last).
        show: what the heatmap colours, ``rank`` or ``prob``.
    """

    prompt: str = ""
    target: str = ""
    position: int | None = None
    layer: int | None = None
    show: str = "rank"

    def to_params(self) -> dict[str, str]:
        """URL parameters ``lens``, ``lens_target``, ``lens_pos``, ``lens_layer``,
        ``lens_show`` (non-defaults; nothing without a prompt)."""
        if not self.prompt:
            return {}
        out = {"lens": self.prompt}
        if self.target:
            out["lens_target"] = self.target
        if self.position is not None:
            out["lens_pos"] = str(self.position)
        if self.layer is not None:
            out["lens_layer"] = str(self.layer)
        if self.show != "rank":
            out["lens_show"] = self.show
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> PromptView:
        """The Prompt page's inputs in ``params`` (an empty view when ``lens`` is missing)."""
        prompt = str(params.get("lens") or "")
        if not prompt:
            return cls()
        if len(prompt) > MAX_PROMPT_CHARS:
            errors.append(
                f"The URL's prompt is {len(prompt):,} characters long; it was cut to "
                f"{MAX_PROMPT_CHARS:,}."
            )
            prompt = prompt[:MAX_PROMPT_CHARS]
        pos = _int(params, "lens_pos", -1, 0, 100_000, errors)
        layer = _int(params, "lens_layer", -1, 0, 10_000, errors)
        return cls(
            prompt=prompt,
            target=str(params.get("lens_target") or ""),
            position=None if pos < 0 else pos,
            layer=None if layer < 0 else layer,
            show=_choice(params, "lens_show", PROMPT_SHOW, "rank", errors),
        )


@dataclass(frozen=True)
class SearchQuery:
    """A query of the search page (what its widgets show and the edit page removes).

    Attributes:
        query: comma-separated concepts ('' when none).
        threshold: the least ``|cosine|`` of a match.
        top: the most matches kept, best first.
        kinds: the matrix kinds searched (``None``: the index's default kinds).
        method: the query embedding (``core.search.embed.METHODS``).
    """

    query: str = ""
    threshold: float = DEFAULT_THRESHOLD
    top: int = DEFAULT_TOP
    kinds: tuple[str, ...] | None = None
    method: str = DEFAULT_METHOD

    def to_params(self) -> dict[str, str]:
        """URL parameters ``q``, ``threshold``, ``top``, ``kinds``, ``method``
        (nothing when the query is empty)."""
        if not self.query.strip():
            return {}
        out = {"q": self.query}
        if self.threshold != DEFAULT_THRESHOLD:
            out["threshold"] = f"{self.threshold:g}"
        if self.top != DEFAULT_TOP:
            out["top"] = str(self.top)
        if self.kinds is not None:
            out["kinds"] = ",".join(self.kinds)
        if self.method != DEFAULT_METHOD:
            out["method"] = self.method
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any], errors: list[str]) -> SearchQuery:
        """The query in ``params`` (an empty one when ``q`` is missing)."""
        query = str(params.get("q") or "")
        if not query.strip():
            return cls()
        threshold = DEFAULT_THRESHOLD
        raw = params.get("threshold")
        if raw not in (None, ""):
            try:
                threshold = float(raw)
                if not 0.0 <= threshold <= 1.0:
                    raise ValueError
            except ValueError:
                errors.append(f"The URL's threshold={raw!r} is not between 0 and 1; using "
                              f"{DEFAULT_THRESHOLD}.")  # fmt: skip
                threshold = DEFAULT_THRESHOLD
        kinds = params.get("kinds")
        return cls(
            query=query,
            threshold=threshold,
            top=_int(params, "top", DEFAULT_TOP, 1, 1000, errors),
            kinds=None if kinds is None else _list(kinds),
            method=_choice(params, "method", METHODS, DEFAULT_METHOD, errors),
        )


@dataclass(frozen=True)
class LastSearch:
    """A query the search page ran, for the edit page's "remove all matches" and for the
    search page's widgets when the user comes back.

    Attributes:
        model, processing: what it searched (the edit page ignores it for another model).
        spec: the query and its options.
    """

    model: str
    processing: str
    spec: SearchQuery

    @property
    def query(self) -> str:
        """The comma-separated concepts."""
        return self.spec.query

    @property
    def threshold(self) -> float:
        """The least ``|cosine|`` of a match."""
        return self.spec.threshold

    @property
    def top(self) -> int | None:
        """The most matches kept, best first."""
        return self.spec.top


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
