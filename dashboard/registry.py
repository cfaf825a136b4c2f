"""Every page of the dashboard, listed once, and how to write one.

The router (``app.py``), :func:`dashboard.state.open_component`, the page benchmark
(``bench_pages.py``), ``scripts/load_test.py`` and the tests all read :data:`PAGES`;
nothing else lists pages.

How to write a page
-------------------
1. Add ``dashboard/views/<key>.py`` and a :class:`Page` for it in :data:`PAGES` (the
   order is the sidebar's; the first page is the home page). Page scripts live in
   ``views/``, not ``pages/``: a ``pages/`` folder beside ``app.py`` would switch on
   Streamlit's legacy multipage mode.
2. The router runs the script after drawing its ``st.title`` (:attr:`Page.heading`) and
   putting the repository root on ``sys.path``. A page is thin: read typed state, call
   a cached loader, call a builder, render::

       import streamlit as st

       from dashboard import components, loaders, state
       from dashboard.builders import grid

       sel, a = components.setup()   # the shared sidebar; a validated state.Selection
                                     # and the shared read-only Analysis (the page stops
                                     # with a message when the model cannot be opened)
       dirs = loaders.component_directions(sel, n=10, k=20)   # cached per arguments
       tokens, values = grid.grid_frames(dirs)                  # a pure builder
       st.dataframe(tokens, key="grid.table")                   # render
       state.open_component("ov", 3, 5, direction=2)            # open a component on the grid

   * State: the selection and every value one page hands to another (the grid's and
     spectra's view options, the last search, the edit history) are typed values
     (:mod:`dashboard.viewstate`) kept by :mod:`dashboard.state`, which owns their
     ``st.session_state`` keys and writes them all to the URL, so a link reproduces the
     view. A page's own widget keys start with ``<key>.``; no page reads another page's
     widget keys. Streamlit forgets a widget's value on runs that do not draw it, so a
     page whose widgets mirror typed state seeds them first (``state.seed``) and stores
     what they read (e.g. ``state.set_grid_view``).
   * Caching: everything cached goes through :mod:`dashboard.loaders`
     (``cached_table`` / ``cached_spec`` for a builder taking the ``Analysis``,
     ``component_directions``, ``search_index``, ...). No ``st.cache_*`` in a page, and
     nothing a loader returns is mutated (it is shared by every session).
   * Builders: ``dashboard/builders/``, functions returning a ``pd.DataFrame`` or an
     ``alt.Chart``, without Streamlit, tested on a tiny model without a running app.
   * Errors: show a ``core.errors.CoreError``'s message with ``st.error``; never a
     traceback.
3. Tests: ``tests/dashboard/test_app.py`` runs every page of :data:`PAGES` headless
   (AppTest) and ``test_browser.py`` renders each in Chromium, waiting for
   :attr:`Page.rendered`; page-specific behaviour gets its own tests beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The folder of ``app.py``; page scripts are relative to it.
DASHBOARD = Path(__file__).resolve().parent

_TABLE = '[data-testid="stDataFrame"]'
_CHART = ".vega-embed canvas, .vega-embed svg"


@dataclass(frozen=True)
class Page:
    """One page of the dashboard.

    Attributes:
        key: short name: the script is ``views/<key>.py``, the URL path is ``/<key>``
            (the home page's is ``/``), and the page benchmark reports it under this name.
        title: its label in the sidebar's navigation.
        icon: a Material icon (``:material/<name>:``).
        rendered: CSS selector of an element the page always draws once its content is
            there; the browser test and the load script wait for it.
        h1: the page's heading when it differs from ``title``.
    """

    key: str
    title: str
    icon: str
    rendered: str
    h1: str = ""

    @property
    def script(self) -> str:
        """The page script, relative to ``app.py`` (what ``st.switch_page`` and AppTest's
        ``switch_page`` take)."""
        return f"views/{self.key}.py"

    @property
    def path(self) -> Path:
        """The page script's absolute path."""
        return DASHBOARD / self.script

    @property
    def heading(self) -> str:
        """The ``st.title`` the router draws above the page."""
        return self.h1 or self.title

    @property
    def url_path(self) -> str:
        """The page's URL path (no slashes): empty for the home page."""
        return "" if self == PAGES[0] else self.key


PAGES: tuple[Page, ...] = (
    Page("overview", "Overview", ":material/home:", _TABLE, h1="svd-lens"),
    Page("spectra", "Spectra", ":material/show_chart:", _CHART),
    Page("grid", "Cluster grid", ":material/grid_on:", _TABLE),
    Page("atlas", "Atlas", ":material/table_rows:", _TABLE),
    Page("search", "Semantic search", ":material/search:", '[data-testid="stTextInput"]'),
    Page("prompt", "Prompt", ":material/keyboard:", '[data-testid="stTextInput"]'),
    Page("edit", "Weight editing", ":material/edit:", _TABLE),
    Page("experiments", "Experiments", ":material/science:", '[data-testid="stButton"]'),
    Page("statistics", "Labels & statistics", ":material/label:", '[data-testid="stForm"]'),
    Page("compare", "Compare", ":material/compare_arrows:", _CHART),
    Page(
        "methods",
        "Methods",
        ":material/stacked_line_chart:",
        '[data-testid="stButton"]',
        h1="SVD, dictionaries, NMF and ICA",
    ),  # fmt: skip
)


def page(key: str) -> Page:
    """The page named ``key``.

    Raises:
        KeyError: no page has that key (the message lists the keys).
    """
    for p in PAGES:
        if p.key == key:
            return p
    raise KeyError(f"no page {key!r}; pages: {', '.join(p.key for p in PAGES)}")
