"""A dictionary atom on the cluster grid, in a real browser (Chromium via Playwright)."""

from __future__ import annotations

from dashboard import registry
from tests.dashboard.test_browser import (  # noqa: F401  (fixtures)
    LOAD_MS,
    browser,
    no_errors,
    server,
    shots_dir,
    wait_ready,
)

GRID = registry.page("grid")


def test_grid_opens_a_dictionary_atom(browser, server, tmp_path):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{GRID.url_path}?kind=embed&layer=0&decomp=dictionary&n=3")
        wait_ready(page)
        page.wait_for_selector(GRID.rendered, timeout=LOAD_MS)
        no_errors(page)
        main = page.inner_text('[data-testid="stMain"]')
        assert "Embedding · Sparse dictionary" in main
        assert "components; FVU" in main
        assert "decomp=dictionary" in page.url
        page.screenshot(path=str(shots_dir(tmp_path) / "grid_dictionary.png"), full_page=True)
    finally:
        page.close()
