"""The dashboard in a real browser: `streamlit run` + Debian's Chromium via Playwright.

Skips only when /usr/bin/chromium is absent and CI is unset; in CI a missing browser
fails. Screenshots go to pytest's tmp dir (or $SVDLENS_SCREENSHOT_DIR when set).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import registry
from dashboard.serve import free_port, start_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOAD_MS = 180_000
GRID, SPECTRA = registry.page("grid"), registry.page("spectra")


def _need_browser() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing in CI; install the chromium package (.ci/run does).")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(dash_env, analysis, tmp_path_factory) -> Iterator[str]:
    _need_browser()
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    try:
        proc = start_server(port, dash_env, log, timeout=60)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}:\n{log.read_text()}") from None
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser(server) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_ready(page) -> None:
    """Sidebar drawn and the app idle (no running indicator)."""
    page.wait_for_selector('[data-testid="stSidebar"] [data-testid="stSelectbox"]', timeout=LOAD_MS)
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=LOAD_MS)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=LOAD_MS
    )


def no_errors(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    errs = page.locator('[data-testid="stAlertContentError"]')
    assert errs.count() == 0, errs.all_inner_texts()


def shots_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("SVDLENS_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.parametrize("p", registry.PAGES, ids=[p.key for p in registry.PAGES])
def test_page_renders(browser, server, tmp_path, p):
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        tab.goto(f"{server}/{p.url_path}?kind=ov&layer=1&head=2")
        wait_ready(tab)
        tab.wait_for_selector(p.rendered, timeout=LOAD_MS)
        no_errors(tab)
        assert tab.inner_text('[data-testid="stMain"] h1').strip() == p.heading
        assert "layer=1" in tab.url and "head=2" in tab.url  # the URL keeps the selection
        tab.screenshot(path=str(shots_dir(tmp_path) / f"{p.key}.png"), full_page=True)
    finally:
        tab.close()


def test_grid_buttons_and_navigation(browser, server, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{GRID.url_path}?kind=ov&layer=0&head=0")
        wait_ready(page)
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=LOAD_MS)
        page.get_by_role("button", name="head ▶").click()
        page.wait_for_url("**head=1**", timeout=LOAD_MS)
        page.get_by_role("button", name="layer ▶").click()
        page.wait_for_url("**layer=1**", timeout=LOAD_MS)
        wait_ready(page)
        no_errors(page)
        # The sidebar's navigation keeps the selection on another page.
        page.locator('[data-testid="stSidebarNav"] a', has_text=SPECTRA.title).click()
        page.wait_for_url(f"**/{SPECTRA.url_path}**", timeout=LOAD_MS)
        wait_ready(page)
        page.wait_for_selector(SPECTRA.rendered, timeout=LOAD_MS)
        assert "layer=1" in page.url and "head=1" in page.url
        no_errors(page)
    finally:
        page.close()


def test_bad_url_shows_error_in_browser(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{server}/{GRID.url_path}?layer=99")
        wait_ready(page)
        page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=LOAD_MS)
        assert "Layer 99 is out of range" in page.inner_text('[data-testid="stMain"]')
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=LOAD_MS)
    finally:
        page.close()


@pytest.mark.parametrize(
    "value",
    [
        "[x](http://evil.example)![i](http://evil.example/i.png)",
        "**b** :red[red] :material/home: me@evil.example www.evil.example $x^2$ <b>h</b>",
    ],
)
def test_markdown_in_the_url_is_text_in_browser(browser, server, value):
    """A shared link's ``?model=`` plants no live link, tracking image or styling."""
    from urllib.parse import quote, urlparse

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    asked: list[str] = []
    page.on(
        "request",
        lambda r: asked.append(r.url) if "evil" in (urlparse(r.url).hostname or "") else None,
    )
    try:
        page.goto(f"{server}/{GRID.url_path}?model={quote(value)}")
        wait_ready(page)
        alert = page.locator('[data-testid="stAlertContentError"] p')
        alert.wait_for(timeout=LOAD_MS)
        text = alert.inner_text().replace("\u2060", "")
        assert value in text and "only its embedded models" in text
        # Plain text only: not one element (link, image, bold, icon, maths) inside.
        assert alert.evaluate("p => p.children.length") == 0, alert.inner_html()
        assert asked == []
    finally:
        page.close()


def test_no_request_leaves_the_server(browser, server):
    """Fonts, icons and the favicon are served by the dashboard itself."""
    from urllib.parse import urlparse

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []

    def check(request) -> None:
        if request.url.startswith(("data:", "blob:")):
            return
        if urlparse(request.url).hostname != "127.0.0.1":
            outside.append(request.url)

    page.on("request", check)
    try:
        for p in (registry.PAGES[0], GRID):
            page.goto(f"{server}/{p.url_path}")
            wait_ready(page)
            page.wait_for_selector(p.rendered, timeout=LOAD_MS)
        page.wait_for_load_state("networkidle")
        assert outside == []
        icon = page.eval_on_selector("link[rel='shortcut icon']", "e => e.href")
        assert icon.startswith("data:image/svg+xml")  # dashboard/favicon.svg, inlined
    finally:
        page.close()


def test_compare_opens_a_trajectory_and_a_checkpoint(browser, server, series_dir, tmp_path):
    compare = registry.page("compare")
    tab = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        tab.goto(f"{server}/{compare.url_path}?kind=ov&layer=1&head=2")
        wait_ready(tab)
        tab.wait_for_selector(compare.rendered, timeout=LOAD_MS)
        tab.get_by_text("A direction's trajectory").wait_for(timeout=LOAD_MS)
        tab.wait_for_selector('[data-testid="stDataFrame"]', timeout=LOAD_MS)
        no_errors(tab)
        tab.screenshot(path=str(shots_dir(tmp_path) / "compare-series.png"), full_page=True)
        tab.get_by_role("button", name="Open on the grid").click()
        tab.wait_for_url(f"**/{GRID.url_path}**", timeout=LOAD_MS)
        wait_ready(tab)
        tab.wait_for_selector(GRID.rendered, timeout=LOAD_MS)
        no_errors(tab)
        # The first checkpoint of the series, the same component, a direction picked.
        assert "step-0001" in tab.url and "layer=1" in tab.url and "head=2" in tab.url
        assert "dir=" in tab.url
        tab.screenshot(path=str(shots_dir(tmp_path) / "compare-opened-grid.png"), full_page=True)
    finally:
        tab.close()


def test_experiments_page_runs_a_truncation(browser, server, tmp_path):
    """The default sweep (OV, every k, both layers of the tiny model) from one click:
    its chart, its summary table and its download appear, and nothing errs."""
    exp = registry.page("experiments")
    tab = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        tab.goto(f"{server}/{exp.url_path}")
        wait_ready(tab)
        tab.wait_for_selector(exp.rendered, timeout=LOAD_MS)
        tab.get_by_role("button", name="Run", exact=True).click()
        tab.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=LOAD_MS)
        tab.wait_for_selector('[data-testid="stDataFrame"]', timeout=LOAD_MS)
        wait_ready(tab)
        no_errors(tab)
        assert tab.get_by_role("button", name="Download CSV").count() == 1
        tab.screenshot(path=str(shots_dir(tmp_path) / "experiments-run.png"), full_page=True)
    finally:
        tab.close()
