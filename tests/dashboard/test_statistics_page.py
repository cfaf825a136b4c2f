"""Labels & statistics: builders without Streamlit, the offline sweep, the page and the
manual-label widget headless (AppTest) on the tiny checkpoint."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.label.store import LabelRecord, LabelStore, reading
from dashboard.builders import calibration
from dashboard.builders import statistics as stats
from dashboard.registry import page
from tests.dashboard.conftest import APP

TIMEOUT = 180
CONCEPTS = ("fire", "water", "animal", "number", "colour", "royalty", "war")


def rec(**kw: Any) -> LabelRecord:
    base: dict[str, Any] = dict(model="m1", weights_hash="h1", matrix="mlp_in", layer=0,
                                head=None, index=0, labeller="offline", interpretable=True,
                                label="x", score=2.0, tokens="a, b", timestamp=1.0,
                                processing="post", projection="standardized")  # fmt: skip
    base.update(kw)
    return LabelRecord(**base)


@pytest.fixture()
def records() -> list[LabelRecord]:
    out = []
    # mlp_in: 3 of 4 weights directions interpretable, 1 of 4 control; ov: 1 of 2
    for i, yes in enumerate([True, True, True, False]):
        out.append(rec(index=i, interpretable=yes, label=f"theme{i}"))
        out.append(rec(index=i, interpretable=i == 0, control=True))
    out += [rec(matrix="ov", head=1, index=0, interpretable=True, label="fire words"),
            rec(matrix="ov", head=2, index=0, interpretable=False),
            rec(matrix="ov", head=2, index=1, interpretable=None, labeller="manual",
                label="unsure"),
            rec(index=0, labeller="manual", interpretable=False, label="nothing", timestamp=5.0),
            rec(model="m2", weights_hash="h2", index=0, interpretable=False)]  # fmt: skip
    return out


def test_labels_frame(records) -> None:
    df = stats.labels_frame(records)
    assert list(df.columns) == stats.COLUMNS and len(df) == len(records)
    assert set(df["block"]) == {"MLP in", "OV heads"}
    assert set(df["source"]) == set(stats.SOURCES)
    assert str(df["head"].dtype) == "Int64" and df["interpretable"].isna().sum() == 1
    assert stats.labels_frame([]).empty


def test_fractions_by_block_and_index(records) -> None:
    df = stats.labels_frame(records)
    f = stats.fractions(df[df["model"] == "m1"], ["block"])
    got = {(r.block, r.labeller, r.source): (r.fraction, r.n) for r in f.itertuples()}
    assert got[("MLP in", "offline", "weights")] == (0.75, 4)
    assert got[("MLP in", "offline", "random control")] == (0.25, 4)
    assert got[("OV heads", "offline", "weights")] == (0.5, 2)
    assert got[("MLP in", "manual", "weights")] == (0.0, 1)
    assert ("OV heads", "manual", "weights") not in got  # undecided rows are left out
    by_index = stats.fractions(df, ["block", "index"])
    row = by_index[(by_index["block"] == "MLP in") & (by_index["index"] == 0)
                   & (by_index["labeller"] == "offline") & (by_index["source"] == "weights")]  # fmt: skip
    assert float(row["fraction"].iloc[0]) == 0.5 and int(row["n"].iloc[0]) == 2  # m1 yes, m2 no
    assert stats.fractions(stats.labels_frame([]), ["block"]).empty


def test_charts_and_summary(records) -> None:
    df = stats.labels_frame(records)
    charts = (stats.block_chart(df), stats.index_chart(df), stats.layer_chart(df),
              stats.model_chart(df))  # fmt: skip
    for chart in charts:
        assert isinstance(chart, alt.FacetChart)
        spec = chart.to_dict()
        assert any(len(v) > 0 for v in spec["datasets"].values())
    s = stats.summary_table(df)
    row = s[(s["model"] == "m1") & (s["block"] == "MLP in") & (s["labeller"] == "offline")]
    assert float(row["weights"].iloc[0]) == 0.75 and float(row["random control"].iloc[0]) == 0.25
    assert int(row["n weights"].iloc[0]) == 4 and int(row["n control"].iloc[0]) == 4
    ov = s[(s["block"] == "OV heads") & (s["labeller"] == "offline")]
    assert math.isnan(float(ov["random control"].iloc[0]))


def test_lines_break_where_an_index_has_no_labels() -> None:
    # Indices 0, 1, 2 and 5 labelled; 3 and 4 not: the line must not join 2 to 5.
    df = stats.labels_frame([rec(index=i) for i in (0, 1, 2, 5)] + [rec(index=9, control=True)])
    data = stats.runs(stats.fractions(df, ["block", "index"]), "index",
                      ["block", "labeller", "source"])  # fmt: skip
    weights = data[data["source"] == "weights"].set_index("index")["run"]
    assert weights[0] == weights[1] == weights[2] != weights[5]
    assert data[data["source"] == "random control"]["run"].nunique() == 1
    spec = stats.index_chart(df).to_dict()
    assert spec["spec"]["encoding"]["detail"]["field"] == "run"


def test_per_layer_fractions() -> None:
    df = stats.labels_frame([rec(layer=0, index=0), rec(layer=0, index=1, interpretable=False),
                             rec(layer=1, index=0, interpretable=False)])  # fmt: skip
    data = stats.runs(stats.fractions(df, ["block", "layer"]), "layer",
                      ["block", "labeller", "source"])  # fmt: skip
    assert dict(zip(data["layer"], data["fraction"])) == {0: 0.5, 1: 0.0}
    assert data["run"].nunique() == 1  # layers 0 and 1 are consecutive
    assert stats.layer_chart(df).to_dict()["spec"]["encoding"]["x"]["field"] == "layer"


def test_search(records) -> None:
    df = stats.labels_frame(records)
    assert list(stats.search_labels(df, "FIRE")["label"]) == ["fire words"]
    assert len(stats.search_labels(df, "a, b")) == len(df[~df["control"]])
    manual = stats.search_labels(df, labeller="manual")
    assert list(manual["label"]) == ["nothing", "unsure"]  # newest first
    assert set(stats.search_labels(df, interpretable=True)["interpretable"]) == {True}
    assert len(stats.search_labels(df, include_control=True)) == len(df)


def test_read_labels_and_csv(records, tmp_path: Path) -> None:
    assert stats.read_labels(tmp_path).empty
    assert stats.csv_text(tmp_path).startswith("model,weights_hash,")
    with LabelStore.in_cache(tmp_path) as store:
        store.put(records)
    df = stats.read_labels(tmp_path)
    assert len(df) == len(records)
    assert stats.csv_text(tmp_path).count("\n") == len(records) + 1


# ------------------------------------------------------------------- on the tiny model


@pytest.fixture(scope="module")
def tiny(dash_env, tmp_path_factory) -> Any:
    """The tiny model's analysis with its own cache directory (labels kept apart)."""
    from core.analysis import open_analysis
    from core.settings import Settings

    cache = tmp_path_factory.mktemp("label-cache")
    return open_analysis(
        Settings(model=dash_env["SVDLENS_DEFAULT_MODEL"], cache_dir=cache, device="cpu")
    )


def test_sweep_offline_with_control(tiny) -> None:
    from core.label.offline import OfflineParams
    from core.label.sweep import offline_labeller, store_labels, sweep_offline

    lab = offline_labeller(tiny, OfflineParams(null_sets=50), concepts=CONCEPTS)
    out = sweep_offline(tiny, ("ov", "mlp_in", "mlp_out"), n=3, control=True, labeller=lab)
    L, H = tiny.meta.n_layers, tiny.meta.n_heads
    # n=3 per component, both ends: OV heads + one control per layer; MLP in and out,
    # each + control
    assert len(out) == 2 * (3 * (L * H + L) + 2 * 3 * (L + L))
    assert {r.end for r in out} == {"top", "bottom"}
    assert store_labels(tiny, out) == len(out)
    df = stats.read_labels(tiny.settings.cache_dir)
    f = stats.fractions(df, ["block"])
    assert set(f["block"]) == {"OV heads", "MLP in", "MLP out"}
    assert set(f["source"]) == set(stats.SOURCES)
    assert ((f["fraction"] >= 0) & (f["fraction"] <= 1)).all()
    assert set(df["label"]) <= set(CONCEPTS) | {""}


def test_statistics_page_runs(tiny, monkeypatch) -> None:
    monkeypatch.setenv("SVDLENS_CACHE_DIR", str(tiny.settings.cache_dir))
    with LabelStore.in_cache(tiny.settings.cache_dir) as store:
        store.put([rec(model=tiny.meta.name, weights_hash=tiny.meta.weights_hash, index=i,
                       interpretable=i % 2 == 0, control=c, label="page-test", end=e,
                       labeller="page-scorer",
                       score=float(i) + (1.5 if not c and e == "top" else 0.0))
                   for i in range(8) for c in (False, True) for e in ("top", "bottom")])  # fmt: skip
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(page("statistics").script)
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == []
    assert at.title[0].value == "Labels & statistics"
    assert at.text_input(key="statistics.search") is not None
    # block, layer, index, calibrated gap per block and per index, model
    assert len(at.get("vega_lite_chart")) == 6
    assert any("calls 5% of the control" in c.value for c in at.caption)
    # The calibrated table has a row per end, each with its own gap.
    cal = next(d.value for d in at.dataframe if "gap low" in d.value.columns)
    mine = cal[cal["labeller"] == "page-scorer"]
    assert list(mine["end"]) == ["top", "bottom"]
    gaps = dict(zip(mine["end"], mine["gap"]))
    assert gaps["top"] > gaps["bottom"]
    # a search narrows the table
    at.text_input(key="statistics.search").set_value("zzzz-no-such-label").run()
    assert not at.exception
    assert any("0 label(s)" in c.value for c in at.caption)


def _widget_script() -> None:
    import os
    from pathlib import Path

    from core.analysis import open_analysis
    from core.query import directions
    from core.settings import Settings
    from dashboard.labels_widget import render_label_controls

    a = open_analysis(
        Settings(
            model=os.environ["SVDLENS_DEFAULT_MODEL"],
            cache_dir=Path(os.environ["LABEL_TEST_CACHE"]),
            device="cpu",
        )
    )
    recs = render_label_controls(a, directions(a, "ov", 1, 2, n=3, k=15), "ov", 1, 2)
    import streamlit as st

    st.write(f"manual={len(recs)}")


def test_label_widget_standalone(tiny, monkeypatch) -> None:
    monkeypatch.setenv("LABEL_TEST_CACHE", str(tiny.settings.cache_dir))
    at = AppTest.from_function(_widget_script, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    wkey = f"labels.{tiny.meta.weights_hash[:12]}.ov.1.2"
    assert at.radio(key=f"{wkey}.end").value == "top"  # the default end
    top = f"{wkey}.top"
    assert at.radio(key=f"{top}.0.interp").value == "unset"
    at.radio(key=f"{top}.0.interp").set_value("yes")
    at.text_input(key=f"{top}.0.label").set_value("fire and flames")
    at.radio(key=f"{top}.2.interp").set_value("no")
    at.button[0].click().run()
    assert not at.exception, at.exception
    with LabelStore.in_cache(tiny.settings.cache_dir) as store:
        r0 = store.get(
            tiny.meta.name, tiny.meta.weights_hash, "ov", 1, 2, 0, **reading(tiny.settings)
        )
        r2 = store.get(
            tiny.meta.name, tiny.meta.weights_hash, "ov", 1, 2, 2, **reading(tiny.settings)
        )
        assert (
            store.get(
                tiny.meta.name, tiny.meta.weights_hash, "ov", 1, 2, 1, **reading(tiny.settings)
            )
            is None
        )
    assert r0 is not None and r0.interpretable and r0.label == "fire and flames"
    assert r0.labeller == "manual" and len(r0.tokens.split(", ")) == 15 and r0.end == "top"
    assert r2 is not None and r2.interpretable is False
    # a rerun shows the stored values; resetting one clears it
    at = AppTest.from_function(_widget_script, default_timeout=TIMEOUT).run()
    assert at.radio(key=f"{top}.0.interp").value == "yes"
    assert at.text_input(key=f"{top}.0.label").value == "fire and flames"
    assert any("manual=2" in m.value for m in at.markdown)
    at.radio(key=f"{top}.2.interp").set_value("unset")
    at.button[0].click().run()
    assert any("manual=1" in m.value for m in at.markdown)
    # The bottom end is labelled on its own, with its own tokens.
    at.radio(key=f"{wkey}.end").set_value("bottom").run()
    bottom = f"{wkey}.bottom"
    assert at.radio(key=f"{bottom}.0.interp").value == "unset"
    at.radio(key=f"{bottom}.0.interp").set_value("no")
    at.text_input(key=f"{bottom}.0.label").set_value("water")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("manual=2" in m.value for m in at.markdown)
    from core.query import directions

    (d,) = directions(tiny, "ov", 1, 2, n=1, k=15)
    with LabelStore.in_cache(tiny.settings.cache_dir) as store:
        b0 = store.get(
            tiny.meta.name,
            tiny.meta.weights_hash,
            "ov",
            1,
            2,
            0,
            end="bottom",
            **reading(tiny.settings),
        )
        t0 = store.get(
            tiny.meta.name, tiny.meta.weights_hash, "ov", 1, 2, 0, **reading(tiny.settings)
        )
    assert b0 is not None and b0.interpretable is False and b0.label == "water"
    assert b0.tokens == ", ".join(raw for raw, _, _ in d.bottom)
    assert t0 is not None and t0.label == "fire and flames"  # the top end's is untouched
    assert t0.tokens == ", ".join(raw for raw, _, _ in d.top)


def test_ends_are_shown_apart() -> None:
    """Top ends of the weights all interpretable, bottom ends none: every table and chart
    keeps the two ends apart."""
    recs = [rec(index=i, end=e, control=c, interpretable=(e == "top" and not c) or i == 0,
                score=float(i) + (3.0 if e == "top" and not c else 0.0))
            for i in range(8) for e in ("top", "bottom") for c in (False, True)]  # fmt: skip
    df = stats.labels_frame(recs)
    assert "end" in stats.COLUMNS and set(df["end"]) == {"top", "bottom"}
    f = stats.fractions(df, ["block", "end"])
    got = {(r.end, r.source): r.fraction for r in f.itertuples()}
    assert got == {("top", "weights"): 1.0, ("top", "random control"): 1 / 8,
                   ("bottom", "weights"): 1 / 8, ("bottom", "random control"): 1 / 8}  # fmt: skip
    s = stats.summary_table(df)
    assert list(s["end"]) == ["top", "bottom"] and list(s["weights"]) == [1.0, 1 / 8]
    for chart in (stats.block_chart(df), stats.index_chart(df), stats.layer_chart(df),
                  stats.model_chart(df)):  # fmt: skip
        assert chart.to_dict()["facet"]["row"]["field"] == "end"
    cal = calibration.calibrated(df)
    assert list(cal["end"]) == ["top", "bottom"]
    top, bottom = cal.to_dict("records")
    # Each end's cut is the same end's control: 8 control scores 0..7, fitted on 4.
    assert top["threshold"] <= 7 and bottom["threshold"] <= 7
    assert top["gap"] > bottom["gap"]
    assert list(calibration.calibrated(df, by=["index"]).columns[:5]) == [
        "model",
        "labeller",
        "block",
        "end",
        "index",
    ]
    spec = calibration.gap_chart(cal).to_dict()
    layers = spec["layer"]
    assert any(lay["encoding"].get("xOffset", {}).get("field") == "end" for lay in layers)
    per_index = calibration.gap_chart(calibration.calibrated(df, by=["index"]), "index")
    assert per_index.to_dict()["facet"]["row"]["field"] == "end"


def test_frame_types_survive_pandas(records) -> None:
    df = stats.labels_frame(records)
    assert isinstance(df["timestamp"].iloc[0], pd.Timestamp)


def _planted(shift: float, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Offline scores of one block: control ~ N(0, 1), weights ~ N(shift, 1)."""
    rng = np.random.default_rng(seed)
    recs = [
        rec(index=i % 10, score=float(v), interpretable=bool(v >= 2), control=False)
        for i, v in enumerate(rng.normal(shift, 1.0, n))
    ]
    recs += [rec(index=i % 10, score=float(v), interpretable=bool(v >= 2), control=True)
             for i, v in enumerate(rng.normal(0.0, 1.0, n))]  # fmt: skip
    return stats.labels_frame(recs)


def test_calibrated_gap_finds_a_planted_shift_and_no_gap_without_one() -> None:
    shifted = calibration.calibrated(_planted(1.5))
    (row,) = shifted.to_dict("records")
    assert row["block"] == "MLP in" and row["n"] == 400 and row["n control"] == 200
    # Held-out control near the stated 5%; weights far above it, the interval excluding 0.
    assert abs(row["control (held out)"] - 0.05) < 3 * math.sqrt(0.05 * 0.95 / 200)
    assert row["gap low"] > 0.2 and row["gap"] > row["gap low"]
    # The cut is the control's, so the weights' share matches a direct count.
    df = _planted(1.5)
    real = df[~df["control"]]["score"].to_numpy(dtype=float)
    assert row["interpretable"] == pytest.approx((real > row["threshold"]).mean())
    same = calibration.calibrated(_planted(0.0, seed=1)).iloc[0]
    assert same["gap low"] < 0 < same["gap high"]
    per_index = calibration.calibrated(_planted(1.5), by=["index"])
    assert sorted(per_index["index"]) == list(range(10)) and (per_index["n"] == 40).all()
    assert calibration.calibrated(_planted(1.5).assign(score=np.nan)).empty
    assert isinstance(calibration.gap_chart(shifted), alt.LayerChart)
    assert isinstance(calibration.gap_chart(per_index, "index"), alt.FacetChart)
    calibration.gap_chart(per_index, "index").to_dict()  # a valid Vega-Lite spec


def test_this_model_means_its_weights_under_the_pages_reading() -> None:
    from core.model.random import random_weights
    from core.settings import Settings

    meta = random_weights(n_layers=1, n_heads=2, d_model=8, d_mlp=32, d_vocab=16).meta
    mine = {"model": meta.name, "weights_hash": meta.weights_hash}
    df = stats.labels_frame([
        rec(**mine, index=0, label="standardized"),
        rec(**mine, index=1, label="raw", projection="raw"),
        rec(**mine, index=2, label="raw processing", processing="raw"),
        rec(index=3, label="other model"),
    ])  # fmt: skip
    settings = Settings()
    assert list(stats.this_reading(df, meta, settings)["label"]) == ["standardized"]
    raw = settings.replace(projection="raw")
    assert list(stats.this_reading(df, meta, raw)["label"]) == ["raw"]
    centred = settings.replace(projection="centred")
    assert stats.this_reading(df, meta, centred).empty
    note = stats.empty_note(df, meta, centred)
    assert "centred projection" in note and "1 under post processing, raw projection" in note
    assert "1 under raw processing, standardized projection" in note
    assert "label-stats --projection raw" in note and "sidebar" not in note
    note = stats.empty_note(df[df["index"] == 2], meta, settings)
    assert "choose raw processing in the sidebar" in note and "label-stats" not in note
    assert stats.empty_note(df[df["model"] != meta.name], meta, centred) == (
        "No labels for this model yet."
    )
