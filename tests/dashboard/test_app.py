"""The whole app, headless (Streamlit's AppTest), on a tiny checkpoint."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.query import kind_result
from dashboard.markup import shown
from dashboard.registry import PAGES, page
from tests.dashboard.conftest import APP, REPO

TIMEOUT = 180
GRID = page("grid").script


def app(params: dict[str, str] | None = None, script: str | None = None) -> AppTest:
    """The app's first run, on the page whose script is ``script`` (like opening its URL)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    if script is not None:
        at.switch_page(script)
    return at.run()


def errors(at: AppTest) -> list[str]:
    """The error boxes' text as a reader sees it (user text is escaped for markdown)."""
    return [shown(e.value) for e in at.error]


def table(at: AppTest, i: int = 0):
    """The ``i``-th dataframe on the page (the grid, the atlas; overview: facts, kinds,
    cache). AppTest does not expose the keys of non-widget dataframes."""
    return at.main.dataframe[i].value


def widget_keys(node) -> set[str]:
    """Keys of every widget under ``node`` (an AppTest block), nested blocks included
    (a form's submit button is keyed ``FormSubmitter:<form key>-<label>``)."""
    key = getattr(node, "key", None)
    keys = {key.removeprefix("FormSubmitter:")} if key and not hasattr(node, "children") else set()
    for child in getattr(node, "children", {}).values():
        keys |= widget_keys(child)
    return keys


def sidebar_keys(at: AppTest) -> set[str]:
    return {w.key for w in at.sidebar.selectbox} | {w.key for w in at.sidebar.radio}


@pytest.fixture(autouse=True)
def _env(dash_env, analysis):
    # `analysis` writes the cache entry first, so each app run reads it.
    return dash_env


@pytest.mark.parametrize("p", PAGES, ids=[p.key for p in PAGES])
def test_every_page_runs(p):
    at = app(script=p.script)
    assert not at.exception, at.exception
    assert errors(at) == []
    assert {"w.model", "w.processing", "w.kind", "w.layer", "w.head"} <= sidebar_keys(at)
    assert [t.value for t in at.title] == [p.heading]  # the router's title, drawn once
    assert not [i.value for i in at.info if "Pick a model" in i.value]  # the model loaded
    assert len(at.main.children) > 1  # the page drew something below the title
    # A page's own widgets are keyed "<key>.": no page collides with another's state.
    assert all(k.startswith(f"{p.key}.") for k in widget_keys(at.main)), widget_keys(at.main)


def test_pages_are_distinct_and_the_home_page_is_first():
    assert len({p.key for p in PAGES}) == len({p.title for p in PAGES}) == len(PAGES)
    assert all(p.path.is_file() for p in PAGES)
    assert [p.url_path for p in PAGES] == ["", *(p.key for p in PAGES[1:])]
    with pytest.raises(KeyError, match="no page 'nope'; pages: overview, spectra"):
        page("nope")
    at = app()  # no page named: the home page
    assert at.title[0].value == PAGES[0].heading


def test_page_widgets_and_outputs():
    at = app(script=GRID)
    assert at.radio(key="grid.end").value == "top"
    assert at.slider(key="grid.n").value == 10
    assert at.slider(key="grid.k").value == 15
    assert at.multiselect(key="grid.filters").value == []
    assert at.toggle(key="grid.control").value is False
    assert {b.key for b in at.button} >= {"grid.next_head", "grid.prev_layer"}
    assert {b.label for b in at.get("download_button")} == {"Download CSV", "Download JSON"}
    assert table(at).shape == (15, 10)

    at.switch_page(page("spectra").script).run()
    assert at.radio(key="spectra.overlay").value == "component"
    assert at.toggle(key="spectra.log").value is True
    assert len(at.get("vega_lite_chart")) == 2  # weights beside the control

    at.switch_page(page("atlas").script).run()
    assert at.text_input(key="atlas.filter").value == ""
    assert len(table(at)) > 0

    at.switch_page(page("overview").script).run()
    facts = table(at, 0).set_index("fact")["value"]
    assert facts["layers"] == "2" and facts["heads per layer"] == "4"
    assert len(table(at, 2)) >= 1


def test_changing_layer_and_head_changes_the_table(analysis):
    at = app(script=GRID)
    first = table(at)
    at.sidebar.selectbox(key="w.head").set_value(3).run()
    by_head = table(at)
    assert not by_head.equals(first)
    d = kind_result(analysis, "ov").decomposition
    assert f"σ={float(d.S[d.index(0, 3), 0]):.4g}" in by_head.columns[0]
    at.sidebar.selectbox(key="w.layer").set_value(1).run()
    by_layer = table(at)
    assert f"σ={float(d.S[d.index(1, 3), 0]):.4g}" in by_layer.columns[0]
    assert dict(at.query_params) == {
        "model": at.session_state["sel.model"],
        "proc": "post",
        "kind": "ov",
        "layer": "1",
        "head": "3",
    }


def test_step_buttons_one_click(analysis):
    at = app(script=GRID)
    at.button(key="grid.next_head").click().run()
    assert at.query_params["head"] == "1" and at.sidebar.selectbox(key="w.head").value == 1
    at.button(key="grid.next_layer").click().run()
    assert at.query_params["layer"] == "1" and at.sidebar.selectbox(key="w.layer").value == 1
    at.button(key="grid.prev_head").click().run()
    assert at.query_params["head"] == "0"
    at.button(key="grid.prev_layer").click().run()
    assert at.query_params["layer"] == "0"
    assert at.button(key="grid.prev_layer").disabled


def test_grid_options_change_the_table():
    at = app(script=GRID)
    at.slider(key="grid.n").set_value(4).run()
    at.slider(key="grid.k").set_value(6).run()
    assert table(at).shape == (6, 4)
    at.radio(key="grid.end").set_value("both").run()
    both = table(at)
    assert both.shape == (6, 8) and both.columns[1].endswith("−")
    at.multiselect(key="grid.filters").set_value(["alpha"]).run()
    alpha = table(at)
    assert all(str(t).lstrip("␣").isalpha() for t in alpha.to_numpy().ravel())
    at.toggle(key="grid.control").set_value(True).run()
    assert not at.exception
    assert at.subheader[0].value.startswith("random control")
    assert not table(at).equals(alpha)


def test_url_restores_a_view(analysis):
    params = {"kind": "qk", "layer": "1", "head": "2", "proc": "post"}
    at = app(params, script=GRID)
    assert errors(at) == []
    assert at.sidebar.selectbox(key="w.kind").value == "qk"
    assert at.sidebar.selectbox(key="w.layer").value == 1
    assert at.sidebar.selectbox(key="w.head").value == 2
    d = kind_result(analysis, "qk").decomposition
    header = table(at).columns[0]
    assert f"σ={float(d.S[d.index(1, 2), 0]):.4g}" in header
    assert at.query_params["kind"] == "qk" and at.query_params["head"] == "2"


def test_url_direction_is_highlighted():
    at = app({"kind": "ov", "layer": "0", "head": "1", "dir": "12"}, script=GRID)
    assert errors(at) == []
    assert any("#12" in i.value for i in at.info)
    # The highlighted direction comes first, then the usual first ten.
    cols = list(table(at).columns)
    assert len(cols) == 11 and cols[0].startswith("#12 ") and cols[1].startswith("#0 ")


def test_url_keeps_the_grid_options():
    params = {"kind": "ov", "layer": "1", "head": "2", "end": "bottom", "n": "4", "k": "6",
              "filters": "alpha", "control": "1"}  # fmt: skip
    at = app(params, script=GRID)
    assert errors(at) == [] and not at.exception
    assert at.radio(key="grid.end").value == "bottom"
    assert (at.slider(key="grid.n").value, at.slider(key="grid.k").value) == (4, 6)
    assert at.multiselect(key="grid.filters").value == ["alpha"]
    assert at.toggle(key="grid.control").value is True
    assert table(at).shape == (6, 4)
    assert {k: at.query_params[k] for k in ("end", "n", "k", "filters", "control")} == {
        k: params[k] for k in ("end", "n", "k", "filters", "control")
    }
    # Changing an option rewrites the URL; another page and back keeps the options.
    at.radio(key="grid.end").set_value("both").run()
    assert at.query_params["end"] == "both"
    at.switch_page(page("spectra").script).run()
    assert at.query_params["end"] == "both" and at.query_params["k"] == "6"
    at.switch_page(GRID).run()
    assert at.radio(key="grid.end").value == "both" and at.slider(key="grid.k").value == 6


def test_grid_labels_the_end_it_shows(analysis):
    """The manual labels under the grid start on the grid's end (top when it shows both)."""
    wkey = f"grid.labels.{analysis.meta.weights_hash[:12]}.ov.1.2"
    for shown_end, label_end in (("top", "top"), ("bottom", "bottom"), ("both", "top")):
        at = app({"kind": "ov", "layer": "1", "head": "2", "end": shown_end}, script=GRID)
        assert errors(at) == [] and not at.exception
        assert at.radio(key=f"{wkey}.end").value == label_end
        assert at.radio(key=f"{wkey}.{label_end}.0.interp").value == "unset"


def test_bad_grid_options_in_the_url_are_one_sentence_each():
    at = app({"end": "sideways", "k": "1000", "filters": "nope"}, script=GRID)
    assert not at.exception
    msgs = errors(at)
    assert any("end='sideways'" in m for m in msgs) and any("k=1000" in m for m in msgs)
    assert any("'nope'" in m for m in msgs)
    assert at.radio(key="grid.end").value == "top" and table(at).shape == (15, 10)


def test_mlp_kind_hides_head():
    at = app({"kind": "mlp_out", "layer": "1"}, script=GRID)
    assert errors(at) == []
    assert "w.head" not in sidebar_keys(at)
    assert "head" not in at.query_params
    assert table(at).shape[1] == 10


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"layer": "99"}, "Layer 99 is out of range"),
        ({"kind": "ov", "head": "17"}, "Head 17 is out of range"),
        ({"layer": "abc"}, "is not a whole number"),
        ({"kind": "nonsense"}, "Unknown matrix"),
        ({"kind": "mlp_gate"}, "no gate"),
        ({"proc": "cooked"}, "processing"),
        ({"dir": "500"}, "Direction 500 is out of range"),
    ],
)
def test_bad_params_give_an_error_not_a_traceback(params, message):
    at = app(params, script=GRID)
    assert not at.exception
    assert any(message in e for e in errors(at)), errors(at)
    # The rest keeps working: a valid view is shown and the sidebar is usable.
    assert len(table(at)) == 15
    at.sidebar.selectbox(key="w.layer").set_value(1).run()
    assert not at.exception and errors(at) == []


def test_model_that_fails_to_load(dash_root):
    # Under SVDLENS_MODELS_DIR, so the dashboard may try it (other paths are refused).
    at = app({"model": str(dash_root / "models" / "nowhere")}, script=GRID)
    assert not at.exception
    assert any("Could not open model" in e for e in errors(at)), errors(at)
    assert "w.model" in sidebar_keys(at)
    # Picking the working model from the sidebar recovers.
    good = [o for o in at.sidebar.selectbox(key="w.model").options if "tiny-gpt2" in o]
    at.sidebar.selectbox(key="w.model").set_value(good[0]).run()
    assert not at.exception and errors(at) == []
    assert len(table(at)) == 15


def test_empty_cache_dir_is_built_with_progress(tmp_path, monkeypatch, dash_env):
    monkeypatch.setenv("SVDLENS_CACHE_DIR", str(tmp_path / "fresh-cache"))
    at = app(script=page("overview").script)
    assert not at.exception and errors(at) == []
    # The page came up after the first directions; the entry is written by the
    # background fill (core.cache.fill), then listed.
    from dashboard import config, loaders

    slot = loaders._slot(config.default_model(), "post", str(config.cache_dir()))
    assert slot.value is not None and slot.value.fill is not None
    assert slot.value.fill.wait(120) and slot.value.fill.error is None
    at.run()
    cache = table(at, 2)
    assert len(cache) == 1 and str(tmp_path) in cache["path"].iloc[0]


def test_spectra_controls():
    at = app({"kind": "ov", "layer": "1", "head": "0"}, script=page("spectra").script)
    at.radio(key="spectra.overlay").set_value("heads").run()
    at.toggle(key="spectra.log").set_value(False).run()
    at.slider(key="spectra.cut").set_value(8).run()
    assert not at.exception
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2 and all('"linear"' in c.proto.spec for c in charts)
    at.toggle(key="spectra.control").set_value(False).run()
    assert not at.exception and len(at.get("vega_lite_chart")) == 1


def test_spectra_overlay_in_the_url_and_a_click_opens_the_direction():
    at = app({"kind": "ov", "layer": "1", "head": "2", "overlay": "heads"},
             script=page("spectra").script)  # fmt: skip
    assert errors(at) == [] and at.radio(key="spectra.overlay").value == "heads"
    assert at.query_params["overlay"] == "heads"
    assert "One colour per component" in at.main.caption[-1].value
    at.radio(key="spectra.overlay").set_value("component").run()
    assert "overlay" not in at.query_params and "Blue: the weights" in at.main.caption[-1].value
    assert "dashed (grey)" in at.main.caption[-1].value
    at.session_state["spectra.chart.0"] = {
        "selection": {"pick_point": [{"layer": 1, "head": 3, "index": 5}]}
    }
    at.run()
    assert not at.exception and at.title[0].value == "Cluster grid"
    assert (at.query_params["head"], at.query_params["dir"]) == ("3", "5")


def test_spectra_cut_applies_to_both_panels_in_every_layer_mode():
    from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df

    at = app({"kind": "mlp_in", "layer": "1"}, script=page("spectra").script)
    at.radio(key="spectra.overlay").set_value("layers").run()
    at.slider(key="spectra.cut").set_value(5).run()
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2
    for chart in charts:
        frames = [convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
        assert frames and max(int(f["index"].max()) for f in frames) == 4


def test_atlas_filter_sort_and_open_in_grid(analysis):
    at = app(script=page("atlas").script)
    full = table(at)
    token = full.iloc[5]["dir 0"].split(" · ")[0]
    at.text_input(key="atlas.filter").set_value(token).run()
    assert 1 <= len(table(at)) <= len(full)
    at.text_input(key="atlas.filter").set_value("no-such-token-xyz").run()
    assert not at.exception and len(table(at)) == 0
    at.multiselect(key="atlas.kinds").set_value([]).run()
    assert not at.exception
    at.multiselect(key="atlas.kinds").set_value(["ov", "mlp_in", "mlp_out"]).run()
    at.text_input(key="atlas.filter").set_value("").run()
    at.selectbox(key="atlas.sort").set_value("effective_rank").run()
    ranked = table(at)
    assert ranked["effective_rank"].is_monotonic_decreasing
    target = ranked.iloc[2]
    at.session_state["atlas.table"] = {"selection": {"rows": [2], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert at.title[0].value == "Cluster grid"
    assert at.query_params["kind"] == target["kind"]
    assert at.query_params["layer"] == str(target["layer"])
    assert table(at).shape[1] == 10


def test_demo_model_if_present():
    demo = REPO / "models" / "demo-gpt2"
    if not (demo / "config.json").is_file():
        pytest.skip("models/demo-gpt2 is not built yet")
    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params["model"] = "default"
    at.run()
    assert not at.exception and errors(at) == []
    for p in PAGES:
        at.switch_page(p.script).run()
        assert not at.exception and errors(at) == [], p.key
