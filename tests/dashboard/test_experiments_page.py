"""The experiments page: its builders without Streamlit, and one run headless."""

from __future__ import annotations

import pandas as pd
import pytest

from core.experiments.truncation import MIN_GAP
from core.label.store import LabelRecord, LabelStore, reading
from dashboard.builders import experiments
from dashboard.registry import page
from tests.dashboard.test_app import app, errors


def settled(at, limit: float = 120.0):
    """Rerun ``at`` until no background run of the page is in progress (a run draws a
    progress bar until its job is done; the page then shows its result)."""
    import time

    start = time.monotonic()
    while at.get("progress") and time.monotonic() - start < limit:
        time.sleep(0.1)
        at.run()
    assert not at.get("progress"), "a background run did not finish"
    return at


@pytest.fixture(autouse=True)
def _no_remembered_runs():
    """Each test starts with no last run remembered on the server (a fresh page would
    show one from an earlier test)."""
    from dashboard.loaders import experiments as exp_loaders

    exp_loaders._latest.clear()
    yield
    exp_loaders._latest.clear()


@pytest.fixture(scope="module")
def frame(analysis):
    return experiments.truncation_frame(analysis, "mlp_out", (0, 1), (0, 2, 8), 1)


def test_frame_has_both_methods_and_ends_at_full_recovery(frame, analysis):
    assert set(frame["method"]) == {experiments.SVD, experiments.RANDOM}
    rank = analysis.svd.kinds["mlp_out"].decomposition.rank
    assert sorted(set(frame["k"])) == [0, 2, 8, rank]
    for _, g in frame.groupby(["layer", "method"]):
        g = g.sort_values("k")
        assert g["recovered"].iloc[0] == pytest.approx(0.0)
        assert g["recovered"].iloc[-1] == pytest.approx(1.0)
        assert (g["loss"].iloc[0] == g["loss_zero"]).all()


def test_summary_k90_is_the_first_grid_k_reaching_it(frame):
    s = experiments.summary_frame(frame)
    assert list(s["layer"]) == [0, 1]
    for _, row in s.iterrows():
        svd = frame[(frame["layer"] == row["layer"]) & (frame["method"] == experiments.SVD)]
        first = svd[svd["recovered"] >= 0.9]["k"].min()
        gap = svd["loss_zero"].iloc[0] - svd["loss_orig"].iloc[0]
        if gap >= MIN_GAP:
            assert row["k for 90%"] == first
        else:
            assert pd.isna(row["k for 90%"])


def test_chart_is_valid_vega_lite(frame):
    spec = experiments.truncation_chart(frame).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"


@pytest.mark.usefixtures("dash_env")
def test_page_runs_a_sweep():
    at = app(script=page("experiments").script)
    assert not at.exception and errors(at) == []
    at.selectbox(key="experiments.kind").set_value("mlp_out")
    at.multiselect(key="experiments.layers").set_value([0])
    at.multiselect(key="experiments.ks").set_value([0, 4]).run()
    # Ranks 0 and 4 as the top k, and 4 as one random draw (the full rank reuses the
    # unedited loss, a draw's k = 0 the zeroed one): 3 passes, from layer 0, so 3 of
    # the whole model.
    told = [c.value for c in at.caption if c.value.startswith("Run makes")]
    assert told and told[0].startswith("Run makes 3 edited forward passes")
    assert "the work of about 3 passes of the whole model" in told[0]
    settled(at.button(key="experiments.run").click().run())
    assert not at.exception and errors(at) == []
    summary = at.main.dataframe[0].value
    assert list(summary["layer"]) == [0]
    assert [b.label for b in at.get("download_button")] == ["Download CSV"]


def test_probe_frame_and_chart(analysis):
    df = experiments.probe_frame(analysis, previous=False, windows=8)
    assert set(df["measure"]) == {"top-1", "top-10", "chance"}
    assert sorted(set(df["layer"])) == list(range(analysis.meta.n_layers))
    top1 = df[df["measure"] == "top-1"].set_index("layer")["accuracy"]
    top10 = df[df["measure"] == "top-10"].set_index("layer")["accuracy"]
    assert ((top1 >= 0) & (top1 <= top10) & (top10 <= 1)).all()
    experiments.probe_chart(df).to_dict()


@pytest.mark.usefixtures("dash_env")
def test_page_runs_the_probe():
    at = app(script=page("experiments").script)
    settled(at.button(key="experiments.probe").click().run())
    assert not at.exception and errors(at) == []
    assert len(at.main.dataframe) == 1


@pytest.fixture(scope="module")
def labelled(analysis):
    """Manual verdicts on the tiny model's layer-0 MLP out: direction 1 interpretable."""
    meta = analysis.meta
    with LabelStore.in_cache(analysis.settings.cache_dir) as labels:
        labels.put(
            LabelRecord(
                meta.name,
                meta.weights_hash,
                "mlp_out",
                0,
                None,
                i,
                "manual",
                i == 1,
                **reading(analysis.settings),
            )  # fmt: skip
            for i in range(8)
        )
    return analysis


def test_knockout_frame_and_chart(labelled):
    df = experiments.knockout_frame(labelled, ("mlp_out",), (0,), "manual", 2)
    titles = [t for _, t in experiments.KNOCKOUT_MEASURES]
    assert list(df["measure"].unique()) == titles
    assert list(df.drop_duplicates(["set", "draw"])["set"]) == [
        "interpretable",
        "matched",
        "random",
        "random",
    ]
    assert (df["n_deleted"] == 1).all()
    kl = df[df["measure"] == titles[1]]["value"]
    assert (kl >= -1e-9).all()
    spec = experiments.knockout_chart(df).to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent"


@pytest.mark.usefixtures("dash_env")
def test_page_runs_a_knockout(labelled):
    at = app(script=page("experiments").script)
    at.multiselect(key="experiments.ko_kinds").set_value(["mlp_out"])
    at.multiselect(key="experiments.ko_layers").set_value([0])
    at.selectbox(key="experiments.ko_labeller").set_value("manual")
    at.number_input(key="experiments.ko_draws").set_value(1)
    settled(at.button(key="experiments.knockout").click().run())
    assert not at.exception and errors(at) == []
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Download CSV", "Download JSON"]
    assert any("Deleted 1 directions" in c.value for c in at.caption)


@pytest.mark.usefixtures("dash_env")
def test_page_says_when_nothing_is_labelled_interpretable(labelled):
    at = app(script=page("experiments").script)
    at.multiselect(key="experiments.ko_kinds").set_value(["mlp_in"])
    at.multiselect(key="experiments.ko_layers").set_value([1])
    at.selectbox(key="experiments.ko_labeller").set_value("manual")
    settled(at.button(key="experiments.knockout").click().run())
    assert not at.exception
    assert any("labelled interpretable" in e for e in errors(at))


@pytest.mark.usefixtures("dash_env")
def test_a_run_draws_its_progress_and_leaves_the_page_usable(monkeypatch):
    """While a run is on its thread the page draws its progress (and its other sections);
    another session asking for the same run shares it; the result then shows."""
    import threading

    release = threading.Event()
    real = experiments.truncation_frame

    def slow(*args, progress, **kwargs):
        progress(0.25, "truncating mlp_in of layer 1")
        release.wait(60)
        return real(*args, progress=progress, **kwargs)

    monkeypatch.setattr(experiments, "truncation_frame", slow)
    at = app(script=page("experiments").script)
    at.selectbox(key="experiments.kind").set_value("mlp_in")
    at.multiselect(key="experiments.layers").set_value([1])
    at.multiselect(key="experiments.ks").set_value([0, 2])
    at.button(key="experiments.run").click().run()
    assert not at.exception and errors(at) == []
    (bar,) = at.get("progress")
    assert bar.proto.value == 25 and "layer 1" in bar.proto.text
    # The page went on: the knockout's and the probe's sections are drawn.
    assert at.button(key="experiments.knockout") and at.button(key="experiments.probe")
    other = app(script=page("experiments").script)
    other.selectbox(key="experiments.kind").set_value("mlp_in")
    other.multiselect(key="experiments.layers").set_value([1])
    other.multiselect(key="experiments.ks").set_value([0, 2])
    other.button(key="experiments.run").click().run()
    assert len(other.get("progress")) == 1
    # A new session (a reloaded page) that has pressed nothing finds the run too.
    reloaded = app(script=page("experiments").script)
    assert len(reloaded.get("progress")) == 1
    assert experiments.latest_caption("truncation", ("mlp_in", (1,), (0, 2), 1)) in [
        c.value for c in reloaded.caption
    ]
    release.set()
    settled(at)
    assert not at.exception and errors(at) == []
    assert list(at.main.dataframe[0].value["layer"]) == [1]
    settled(reloaded)
    assert list(reloaded.main.dataframe[0].value["layer"]) == [1]


def test_the_last_run_is_named_in_one_caption():
    assert experiments.spans([3, 0, 1, 2, 7, 9, 10]) == "0–3, 7, 9–10"
    text = experiments.latest_caption("truncation", ("ov", tuple(range(30)), (0, 4), 1))
    assert "(OV, layers 0–29, k = 0, 4, 1 random draw)" in text
    text = experiments.latest_caption("knockout", (("mlp_in", "mlp_out"), (2, 3), "manual", 3))
    assert "(MLP in and MLP out, layers 2–3, manual labels, 3 random sets)" in text
    assert "previous token" in experiments.latest_caption("probe", (True,))


@pytest.mark.usefixtures("dash_env")
def test_a_failed_run_is_one_sentence_and_runs_again(monkeypatch):
    from core.errors import CoreError

    real, failures = experiments.probe_frame, [1]

    def flaky(*args, **kwargs):
        if failures:
            failures.pop()
            raise CoreError("The reference text is missing; reinstall the package.")
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "probe_frame", flaky)
    at = app(script=page("experiments").script)
    at.toggle(key="experiments.previous").set_value(True)
    settled(at.button(key="experiments.probe").click().run())
    assert not at.exception
    (shown,) = errors(at)
    assert "reference text is missing" in shown and "reinstall" in shown
    settled(at.button(key="experiments.probe").click().run())
    assert not at.exception and errors(at) == [] and len(at.main.dataframe) == 1
