"""Semantic search: the builders on a tiny model (no Streamlit) and the page (AppTest)."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.errors import SpecError
from core.search.engine import build_index, embed_query, search
from core.search.null import ALPHA
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
    assert page.slider(key="search.threshold").value == pytest.approx(0.0)
    assert page.number_input(key="search.top").value == 20
    assert page.selectbox(key="search.method").value == "token"
    assert set(page.multiselect(key="search.kinds").value) == {"ov", "mlp_in", "mlp_out"}
    assert any("Type a query" in i.value for i in page.info)


def hits(at) -> pd.DataFrame:
    """The hits table (the page's first dataframe is the query's tokenisation)."""
    return pd.concat([d.value for d in at.main.dataframe[1:]], ignore_index=True)


def test_page_shows_ranked_results_and_heatmaps(page):
    page.slider(key="search.threshold").set_value(0.0)
    page.session_state["search.show_all"] = True  # the toggle appears with the results
    page.text_input(key="search.query").input("the, cat").run()
    assert not page.exception, page.exception
    tokens = page.main.dataframe[0].value
    assert list(tokens["concept"]) == ["the", "cat"]
    df = hits(page)
    assert len(df) == 20
    assert set(df.columns) >= {"p", "z", "significant"}
    assert (df["significant"] == (df["p"] <= ALPHA)).all()
    assert sorted(df["rank"]) == list(range(1, 21))
    score = df.sort_values("rank")["score"].tolist()
    assert score == sorted(score, reverse=True)
    assert len(page.get("vega_lite_chart")) == 2  # heads and MLPs
    # The caption says the random words were as frequent as the query's.
    assert any("each as frequent in English" in c.value for c in page.caption)
    page.selectbox(key="search.method").set_value("pinv").run()
    assert not page.exception
    assert len(page.main.dataframe[1].value) == 20  # cosine methods: the threshold decides
    page.multiselect(key="search.kinds").set_value(["mlp_out"]).run()
    assert set(hits(page)["kind"]) == {"mlp_out"}
    assert len(page.get("vega_lite_chart")) == 1


def test_search_view_separates_non_significant_hits(index):
    view = sb.search_view(index, "the, cat", "token", 0.0, 20, ["ov", "mlp_in", "mlp_out"])
    assert len(view.table) + len(view.weak) == 20
    assert view.table["significant"].all() and not view.weak["significant"].any()
    assert (view.table["p"] <= ALPHA).all() and (view.weak["p"] > ALPHA).all()
    assert list(view.every_hit["rank"]) == list(range(1, 21))
    if view.nothing_matches:
        assert "No direction matches significantly" in sb.no_match_message(view)
    # A multi-token concept shows all the tokens it is matched by.
    word = next(w for w in ("flames", "xylophone", "zebra", "mountain")
                if len(index.tokenizer.encode(" " + w)) > 1 and len(index.tokenizer.encode(w)) > 1)  # fmt: skip
    res = search(index, f"the, {word}", threshold=0.0, top=3)
    frame = sb.query_tokens_frame(res)
    assert list(frame["tokens"]) == [
        1,
        min(len(index.tokenizer.encode(w, add_special_tokens=False)) for w in (word, " " + word)),
    ]
    assert "+" in frame["spelled as"].iloc[1] and "+" in res.query.describe()


def test_nothing_significant_shows_a_message_and_hides_the_rest_behind_a_toggle(page, index):
    query = "zebra, quantum, the"
    view = sb.search_view(index, query, "token", 0.0, 20, ["ov", "mlp_in", "mlp_out"])
    if not view.nothing_matches:
        pytest.skip("the tiny model matches this query")
    page.slider(key="search.threshold").set_value(0.0)
    page.text_input(key="search.query").input(query).run()
    assert not page.exception
    assert any("No direction matches significantly" in w.value for w in page.warning)
    assert page.subheader[0].value.startswith("0 significant matches")
    assert page.toggle(key="search.show_all").label == "Show non-significant hits (20)"
    assert len(page.main.dataframe) == 1  # only the tokenisation
    page.toggle(key="search.show_all").set_value(True).run()
    assert len(page.main.dataframe[1].value) == 20
    assert not page.main.dataframe[1].value["significant"].any()


def test_nonsense_query_is_refused_on_the_page(page):
    page.text_input(key="search.query").input("qqqzzzxxyy").run()
    assert not page.exception
    assert any("is not a known word" in e.value for e in page.error)


def test_page_reports_bad_queries(page):
    page.text_input(key="search.query").input(" , ").run()
    assert not page.exception
    assert [e.value for e in page.error] == [  # shown as typed: escaped for markdown
        plain('The query is empty; give one or more comma-separated words, e.g. "fire, flames".')
    ]
    page.text_input(key="search.query").input("the").run()
    page.multiselect(key="search.kinds").set_value([]).run()
    assert any("at least one matrix kind" in e.value for e in page.error)


@pytest.mark.parametrize("sign", ["antipodal", "positive"])
def test_clicking_a_result_opens_it_on_the_grid(page, sign):
    page.slider(key="search.threshold").set_value(0.0)
    page.session_state["search.show_all"] = True  # the toggle appears with the results
    page.selectbox(key="search.method").set_value("pinv")
    page.text_input(key="search.query").input("the, cat").run()
    df = page.main.dataframe[1].value
    i = int((df["match"] == sign).to_numpy().nonzero()[0][0])
    hit = df.iloc[i]
    page.session_state["search.table"] = {"selection": {"rows": [i], "columns": [], "cells": []}}
    page.run()
    assert not page.exception, page.exception
    assert page.title[0].value == "Cluster grid"
    assert page.query_params["kind"] == hit["kind"]
    assert page.query_params["layer"] == str(hit["layer"])
    assert page.query_params["dir"] == str(hit["index"])
    assert any(f"#{hit['index']}" in i.value for i in page.info)
    # The hit is the first column, on its matching end.
    want = "bottom" if sign == "antipodal" else "top"
    assert page.radio(key="grid.end").value == want
    assert page.main.dataframe[0].value.columns[0].startswith(f"#{hit['index']} ")
    assert page.query_params.get("end", "top") == want


def test_clicking_a_heatmap_cell_opens_its_component(page):
    page.slider(key="search.threshold").set_value(0.0)
    page.text_input(key="search.query").input("the, cat").run()
    cell = {"kind": "ov", "layer": 1, "head": 3, "index": 4, "cosine": -0.2}
    page.session_state["search.heads"] = {"selection": {sb.PICK: [cell]}}
    page.run()
    assert not page.exception, page.exception
    assert page.title[0].value == "Cluster grid"
    assert (page.query_params["layer"], page.query_params["head"]) == ("1", "3")
    assert page.query_params["dir"] == "4" and page.radio(key="grid.end").value == "bottom"


def test_picked_cell_reads_a_selection():
    assert sb.picked_cell(None) is None and sb.picked_cell({sb.PICK: []}) is None
    mlp = {"kind": "mlp_in", "layer": 2, "head": None, "index": 7, "cosine": 0.3}
    assert sb.picked_cell({sb.PICK: [mlp]}) == ("mlp_in", 2, None, 7, "top")
