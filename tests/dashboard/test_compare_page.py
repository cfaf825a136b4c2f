"""The Compare page (AppTest): two models (self-match is the identity, a mismatched
tokenizer is refused in one sentence), a checkpoint series (heatmaps, trajectory, a
checkpoint opened on the grid), and the builders without Streamlit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.builders import compare as cb
from dashboard.registry import page as registry_page
from tests.dashboard.conftest import APP
from tests.tiny_models import make_hf_model, make_tokenizer

TIMEOUT = 180


@pytest.fixture
def page(dash_env, analysis, series_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params.update({"kind": "ov", "layer": "1", "head": "2"})
    at.switch_page(registry_page("compare").script)
    return at.run()


def test_series_trajectory_and_open_on_the_grid(page: AppTest, series_dir: Path) -> None:
    assert not page.exception, page.exception
    assert page.radio(key="compare.mode").value == "Checkpoint series"
    assert page.error == []
    traj = page.main.dataframe[0].value
    assert list(traj["checkpoint"]) == ["step-0001", "step-0002", "step-0004"]
    assert abs(traj["|cos|"].iloc[-1] - 1) < 1e-5  # the final direction is its own partner
    page.selectbox(key="compare.direction").set_value(3).run()
    page.selectbox(key="compare.open_at").set_value(1).run()
    partner = int(page.main.dataframe[0].value["partner"].iloc[1])
    page.button(key="compare.open").click().run()
    assert not page.exception, page.exception
    assert page.title[0].value == "Cluster grid"
    assert page.query_params["model"] == str(series_dir / "step-0002")
    assert (page.query_params["layer"], page.query_params["head"]) == ("1", "2")
    assert page.query_params["dir"] == str(partner)


def test_two_models_self_match_and_tokenizer_refusal(dash_env, analysis, dash_root: Path) -> None:
    # A model with another vocabulary, only for this test (the picker lists the folder).
    other = dash_root / "models" / "tiny-vocab300"
    other.mkdir(parents=True)
    try:
        make_hf_model("gpt2", vocab_size=300).save_pretrained(other)
        make_tokenizer(300).save_pretrained(other)
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        at.query_params.update({"kind": "ov", "layer": "1", "head": "2"})
        at.switch_page(registry_page("compare").script)
        at.run()
        at.radio(key="compare.mode").set_value("Two models").run()
        assert not at.exception, at.exception
        df = at.main.dataframe[0].value
        assert list(df["A"]) == list(df["B"]) and (df["|cos|"] > 0.9999).all()
        assert df["matched"].all()
        at.selectbox(key="compare.other").set_value(str(other)).run()
        assert not at.exception, at.exception
        (err,) = at.error
        assert "do not share a tokenizer" in err.value and "Traceback" not in err.value
    finally:
        shutil.rmtree(other)


def test_series_embedding_dictionary(page: AppTest) -> None:
    """The toggle builds every checkpoint's embedding dictionary and charts it beside the
    random control."""
    page.toggle(key="compare.dictionary").set_value(True).run()
    assert not page.exception, page.exception
    assert page.error == []
    charts = [c for c in page.get("vega_lite_chart") if "Embedding dictionary" in str(c.proto)]
    assert len(charts) == 1
    points = cb.dictionary_chart(
        [{"checkpoint": "/m/step-1", "fvu": 0.4, "control_fvu": 0.6, "n_atoms": 8, "nnz": 3}]
    ).to_dict()
    assert points["title"] == "Embedding dictionary (8 atoms, 3 non-zeros per token)"


def test_builders() -> None:
    m = {
        "pairs": [
            {"a": 0, "b": 1, "cos": 0.99, "sign": -1, "sigma_a": 2.0, "sigma_b": 1.5},
            {"a": 1, "b": 0, "cos": 0.2, "sign": 1, "sigma_a": 1.0, "sigma_b": 1.4},
        ],
        "threshold": 0.9,
    }
    df = cb.match_frame(m, [["x"], ["y"]], [["p", "q"], ["r"]])
    assert list(df["matched"]) == [True, False] and list(df["sign"]) == ["−", "+"]
    assert list(df["top tokens B"]) == ["r", "p q"]
    traj = {
        "checkpoints": ["/m/step-1", "/m/step-2"],
        "consecutive_cos": [[0.5, 1.0]],
        "directions": [
            {"cos": [0.5, 1.0], "partner": [1, 0], "top": [["a"], ["b"]], "appears_at": 1},
            {"cos": [1.0, 1.0], "partner": [0, 1], "top": [["c"], ["d"]], "appears_at": 0},
        ],
    }
    f = cb.trajectory_frame(traj, 0)
    assert list(f["checkpoint"]) == ["step-1", "step-2"] and list(f["partner"]) == [1, 0]
    assert len(cb.steps_heatmap(traj).to_dict()["datasets"]) == 1
    assert cb.short("EleutherAI/pythia-160m@step3000") == "EleutherAI/pythia-160m@step3000"


def test_series_listing(dash_env, series_dir: Path) -> None:
    from dashboard import config

    assert str(series_dir) in config.checkpoint_series()
