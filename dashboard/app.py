"""Entry point and router: ``streamlit run dashboard/app.py``.

Only routing lives here. ``PAGES`` lists every page; a page whose file does not exist
yet (search, edit, statistics are added by their own authors) is left out, so adding a
page file is enough to make it appear.

Writing a page (see dashboard/components.py, state.py, loaders.py)::

    import _root  # noqa: F401   (first line of every page: makes `dashboard`, `core` importable)
    from dashboard import components, loaders, state
    sel, a = components.setup()   # shared sidebar; validated selection; shared read-only Analysis
    dirs = loaders.component_directions(sel, n=10, k=20)   # cached per arguments
    # build a DataFrame / alt.Chart with a function from dashboard/builders/, render it
    state.open_component("ov", layer, head, direction=i)   # open a component on the grid page

Environment (read only by the dashboard): SVDLENS_DEFAULT_MODEL (model opened first,
default: core's embedded demo), SVDLENS_MODELS_DIR (folder of local checkpoints offered
in the picker, default models/), SVDLENS_CACHE_DIR (SVD cache, default cache/).
"""

from __future__ import annotations

from pathlib import Path

import _root  # noqa: F401  (repository root on sys.path; see dashboard/_root.py)
import streamlit as st

from dashboard.components import timed_run

HERE = Path(__file__).resolve().parent

#: (file relative to this script, title, icon); the first is the home page.
PAGES: list[tuple[str, str, str]] = [
    ("pages/overview.py", "Overview", ":material/home:"),
    ("pages/spectra.py", "Spectra", ":material/show_chart:"),
    ("pages/grid.py", "Cluster grid", ":material/grid_on:"),
    ("pages/atlas.py", "Atlas", ":material/table_rows:"),
    ("pages/search.py", "Semantic search", ":material/search:"),
    ("pages/edit.py", "Weight editing", ":material/edit:"),
    ("pages/statistics.py", "Labels & statistics", ":material/label:"),
]

st.set_page_config(page_title="svd-lens", page_icon=":material/blur_on:", layout="wide")
page = st.navigation(
    [
        st.Page(str(HERE / path), title=title, icon=icon, default=i == 0)
        for i, (path, title, icon) in enumerate(PAGES)
        if (HERE / path).is_file()
    ]
)
timed_run(page)
