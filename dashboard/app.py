"""Entry point and router: ``streamlit run dashboard/app.py``.

Only routing lives here: the pages are :data:`dashboard.registry.PAGES` (whose docstring
says how to write one). The router draws each page's title, then runs its script.

Environment (read only by the dashboard): SVDLENS_DEFAULT_MODEL (model opened first,
default: core's embedded demo), SVDLENS_MODELS_DIR (folder of local checkpoints offered
in the picker, default models/), SVDLENS_CACHE_DIR (SVD cache, default cache/),
SVDLENS_ALLOW_HUB (hub ids, default off), SVDLENS_MAX_JOBS (expensive jobs at once, 2).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import _root  # noqa: F401  (repository root on sys.path; see dashboard/_root.py)
from dashboard.components import timed_run
from dashboard.registry import PAGES

# A local file: a ":material/…:" page icon makes every browser fetch the favicon from
# fonts.gstatic.com (the sidebar's material icons come from Streamlit's bundled font).
FAVICON = str(Path(__file__).with_name("favicon.svg"))
st.set_page_config(page_title="svd-lens", page_icon=FAVICON, layout="wide")
routes = [
    st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path, default=i == 0)
    for i, p in enumerate(PAGES)
]
page = st.navigation(routes)
st.title(next(p for p, r in zip(PAGES, routes) if r is page).heading)
timed_run(page)
