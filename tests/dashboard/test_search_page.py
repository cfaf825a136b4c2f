"""Semantic search: the builders on a tiny model (no Streamlit) and the page (AppTest)."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.errors import SpecError
from core.search.engine import build_index, embed_query, search
from dashboard.builders import search as sb
from dashboard.markup import plain
from dashboard.registry import page as registry_page
from tests.dashboard.conftest import APP

TIMEOUT = 180


@pytest.fixture(scope="module")
def index(analysis):
    return build_index(analysis)


# ------------------------------------------------------------------------- builders


def test_results_frame_mirrors_hits(index):
    res = search(index, "the, cat", threshold=0.0, top=15)
    df = sb.results_frame(res)
    assert list(df["rank"]) == list(range(1, 16))
    assert list(df["kind"]) == [h.matrix for h in res.hits]
    assert list(df["cosine"]) == [h.cosine for h in res.hits]
    for (_, row), h in zip(df.iterrows(), res.hits):
        assert row["match"] == h.sign
        assert row["tokens"].startswith("(bottom) ") == (h.end == "bottom")
        assert (row["head"] is pd.NA) == (h.head is None)
    empty = sb.results_frame(search(index, "the", threshold=1.0))
    assert empty.empty and "cosine" in empty.columns
    for (_, row), h in zip(df.iterrows(), res.hits):
        assert sb.row_direction(row) == (h.matrix, h.layer, h.head, h.index)


def test_best_per_component_is_the_max_abs_cosine(index, analysis):
    res = search(index, "the", threshold=0.0, top=100000, kinds=["ov", "mlp_out"])
    q = embed_query(index, res.query, "token")
    best = sb.best_per_component(index, q, ["ov", "mlp_out"])
    n_heads = analysis.meta.n_layers * analysis.meta.n_heads
    assert len(best) == n_heads + analysis.meta.n_layers
    for _, row in best.iterrows():
        head = None if row["head"] is pd.NA else int(row["head"])
        mine = [
            h for h in res.hits if (h.matrix, h.layer, h.head) == (row["kind"], row["layer"], head)
        ]
        top = max(mine, key=lambda h: abs(h.cosine))
        assert row["cosine"] == pytest.approx(top.cosine, abs=2e-3)


def test_search_view_splits_heads_and_mlps_and_charts_build(index):
    view = sb.search_view(index, "cat, dog", "pinv", 0.15, 10, ["ov", "mlp_in", "mlp_out"])
    assert set(view.heads["kind"]) == {"ov"}
    assert set(view.mlps["kind"]) == {"mlp_in", "mlp_out"}
    spec = sb.head_heatmap(view.heads, 0.15).to_dict()
    enc = spec["spec"]["encoding"] if "spec" in spec else spec["encoding"]
    assert enc["x"]["field"] == "head" and enc["y"]["field"] == "layer"
    layer = spec["spec"]
    color = layer["encoding"]["color"] if "encoding" in layer else None
    assert color is None or color["scale"]["scheme"] == "redblue"
    mspec = sb.mlp_heatmap(view.mlps, 0.15).to_dict()
    assert mspec["encoding"]["color"]["scale"]["scheme"] == "redblue"
    assert mspec["encoding"]["color"]["scale"]["domainMid"] == 0


def test_search_view_errors_are_one_sentence(index):
    with pytest.raises(SpecError, match=r"^The query is empty"):
        sb.search_view(index, " , ", "ridge", 0.15, 10, ["ov"])
    with pytest.raises(SpecError, match="Name at least one matrix kind"):
        sb.search_view(index, "the", "ridge", 0.15, 10, [])


# ----------------------------------------------------------------------------- page


@pytest.fixture
def page(dash_env, analysis):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(registry_page("search").script)
    return at.run()


def test_page_runs_and_prompts_for_a_query(page):
    assert not page.exception, page.exception
    assert page.title[0].value == "Semantic search"
    assert page.text_input(key="search.query").value == ""
    assert page.slider(key="search.threshold").value == pytest.approx(0.15)
    assert page.number_input(key="search.top").value == 20
    assert page.selectbox(key="search.method").value == "token"
    assert set(page.multiselect(key="search.kinds").value) == {"ov", "mlp_in", "mlp_out"}
    assert any("Type a query" in i.value for i in page.info)


def test_page_shows_ranked_results_and_heatmaps(page):
    page.slider(key="search.threshold").set_value(0.0)
    page.text_input(key="search.query").input("the, cat").run()
    assert not page.exception, page.exception
    df = page.main.dataframe[0].value
    assert len(df) == 20
    assert list(df["rank"]) == list(range(1, 21))
    score = df["score"].tolist()
    assert score == sorted(score, reverse=True)
    assert len(page.get("vega_lite_chart")) == 2  # heads and MLPs
    page.selectbox(key="search.method").set_value("pinv").run()
    assert not page.exception
    page.multiselect(key="search.kinds").set_value(["mlp_out"]).run()
    assert set(page.main.dataframe[0].value["kind"]) == {"mlp_out"}
    assert len(page.get("vega_lite_chart")) == 1


def test_page_reports_bad_queries(page):
    page.text_input(key="search.query").input(" , ").run()
    assert not page.exception
    assert [e.value for e in page.error] == [  # shown as typed: escaped for markdown
        plain('The query is empty; give one or more comma-separated words, e.g. "fire, flames".')
    ]
    page.text_input(key="search.query").input("the").run()
    page.multiselect(key="search.kinds").set_value([]).run()
    assert any("at least one matrix kind" in e.value for e in page.error)


def test_clicking_a_result_opens_it_on_the_grid(page):
    page.slider(key="search.threshold").set_value(0.0)
    page.text_input(key="search.query").input("the, cat").run()
    hit = page.main.dataframe[0].value.iloc[3]
    page.session_state["search.table"] = {"selection": {"rows": [3], "columns": [], "cells": []}}
    page.run()
    assert not page.exception, page.exception
    assert page.title[0].value == "Cluster grid"
    assert page.query_params["kind"] == hit["kind"]
    assert page.query_params["layer"] == str(hit["layer"])
    assert page.query_params["dir"] == str(hit["index"])
    assert any(f"#{hit['index']}" in i.value for i in page.info)
