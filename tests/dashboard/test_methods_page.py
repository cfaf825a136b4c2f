"""The Method selector on the grid and the atlas, and the Methods comparison page (AppTest)."""

from __future__ import annotations

import pytest

from dashboard.registry import page
from tests.dashboard.test_app import app, errors, table

GRID = page("grid").script
ATLAS = page("atlas").script
METHODS = page("methods").script


@pytest.fixture(autouse=True)
def _env(dash_env, analysis):
    return dash_env


def test_method_selector_shows_dictionary_atoms_and_keeps_them_in_the_url():
    at = app({"kind": "embed", "layer": "0", "decomp": "dictionary"}, GRID)
    assert not at.exception, at.exception
    assert errors(at) == []
    assert at.selectbox(key="grid.method").value == "dictionary"
    assert "Sparse dictionary" in at.subheader[0].value
    grid = table(at)
    assert grid.shape[1] == 10 and grid.columns[0].startswith("#0")
    assert at.query_params["decomp"] == ["dictionary"] or at.query_params["decomp"] == "dictionary"
    # Another method that does not read the embedding says which matrices it reads.
    at.selectbox(key="grid.method").set_value("nmf").run()
    assert any("NMF reads" in i.value for i in at.info)
    at.sidebar.selectbox(key="w.kind").set_value("mlp_out").run()
    assert not at.exception, at.exception
    assert "NMF" in at.subheader[0].value and table(at).shape[1] == 10
    # Back to SVD: the singular directions, and no decomp= in the URL.
    at.selectbox(key="grid.method").set_value("svd").run()
    assert "σ=" in table(at).columns[0] and "decomp" not in dict(at.query_params)


def test_atlas_lists_the_built_components_of_a_method():
    at = app({"kind": "embed", "layer": "0", "decomp": "dictionary"}, GRID)  # builds it
    at.switch_page(ATLAS).run()
    assert at.selectbox(key="atlas.method").value == "dictionary"
    rows = table(at)
    assert "Embedding" in set(rows["component"])


def test_methods_page_compares_and_downloads():
    at = app(script=METHODS)
    assert not at.exception, at.exception
    assert any("Compare methods" in i.value for i in at.info)
    at.selectbox(key="methods.matrix").set_value("mlp_out").run()
    at.number_input(key="methods.label").set_value(0).run()
    at.toggle(key="methods.curves").set_value(False).run()
    at.button(key="methods.run").click().run()
    assert not at.exception, at.exception
    assert errors(at) == []
    assert [s.value for s in at.subheader][:2] == [
        "Reconstruction error",
        "Atoms the SVD cannot see",
    ]
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) >= 1
    assert {b.label for b in at.get("download_button")} == {"Download CSV"}


def test_method_view_round_trips_through_the_url():
    from dashboard.viewstate import MethodView

    errors_: list[str] = []
    assert MethodView().to_params() == {}
    assert MethodView.from_params(MethodView("nmf").to_params(), errors_) == MethodView("nmf")
    assert MethodView.from_params({"decomp": "pca"}, errors_) == MethodView()
    assert errors_ == ["The URL's decomp='pca' is unknown; use one of svd, dictionary, nmf, ica."]


def test_control_toggle_shows_the_method_fitted_to_noise():
    at = app({"kind": "mlp_out", "layer": "1", "decomp": "dictionary"}, GRID)
    real = table(at)
    at.toggle(key="grid.control").set_value(True).run()
    assert not at.exception, at.exception
    assert at.subheader[0].value.startswith("random control for L1 MLP out")
    assert not table(at).equals(real)
