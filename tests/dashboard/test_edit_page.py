"""Weight editing: the builders on a tiny model (no Streamlit) and the page (AppTest)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

import core.search.engine as engine
from core.edit import Edit, EditSet, apply_edits, measure, plan_sweep, unedited_reference
from core.search import build_index
from core.search.null import Null
from dashboard.builders import ablation as ab
from dashboard.builders import edit as eb
from dashboard.registry import page as registry_page
from tests.dashboard.conftest import APP

EDIT = registry_page("edit").script

TIMEOUT = 240
PROMPT = "the fire burned with hot"


# ------------------------------------------------------------------------- builders


@pytest.fixture
def low_null(monkeypatch):
    """A null whose random bests all score -2: a random model has no real matches, so
    this makes its better hits significant."""

    def fake(index, n, method, kinds, threshold, **_):
        return Null(method, n, threshold, tuple(kinds), torch.full((20,), -2.0))

    monkeypatch.setattr(engine, "null_for", fake)


def test_edits_frame_and_selection():
    assert eb.edit_for_selection("qk", 0, 1, 0, 0.0) is None
    assert eb.edit_for_selection("mlp_out", 1, 3, 2, 0.0) == Edit("mlp_out", 1, None, 2)
    edits = EditSet.parse("ov:0:1:2,mlp_in:1:0*0.5")
    df = eb.edits_frame(edits)
    assert list(df["spec"]) == ["ov:0:1:2", "mlp_in:1:0*0.5"]
    assert df["head"].iloc[0] == 1 and df["head"].iloc[1] is pd.NA
    assert list(df["action"]) == ["remove", "scale ×0.5"]
    assert eb.edits_frame(EditSet()).empty
    assert eb.components_of(edits.add(Edit("ov", 0, 1, 5))) == [("ov", 0, 1), ("mlp_in", 1, None)]
    # The matrices to inspect: the edited ones, then the sidebar's if it can be edited.
    assert eb.matrix_options(edits, ("ov", 0, 1)) == [("ov", 0, 1), ("mlp_in", 1, None)]
    assert eb.matrix_options(edits, ("mlp_out", 2, None))[-1] == ("mlp_out", 2, None)
    assert eb.matrix_options(EditSet(), ("qk", 0, 1)) == []


def test_report_parts_are_measure(analysis):
    """The page's three cached parts are what ``core.edit.measure`` reports."""
    spec = "ov:1:2:0,mlp_out:0:1"
    rep = measure(analysis, EditSet.parse(spec), PROMPT, " f", max_new_tokens=4)
    edited = apply_edits(analysis, EditSet.parse(spec))
    assert eb.compute_shift(analysis, edited, PROMPT, " f") == rep.shift
    reference = unedited_reference(analysis)
    assert eb.compute_specificity(analysis, edited, reference) == rep.specificity
    assert eb.compute_continuation(analysis, None, PROMPT, 4) == rep.continuation_before
    assert eb.compute_continuation(analysis, edited, PROMPT, 4) == rep.continuation_after


def test_report_views(analysis):
    edited = apply_edits(analysis, EditSet.parse("ov:1:2:0,mlp_out:0:1"))
    shift = eb.compute_shift(analysis, edited, PROMPT, " f")
    reference = eb.compute_specificity(analysis, edited, unedited_reference(analysis))
    lp = eb.logprob_frame(shift)
    assert lp["delta"].iloc[0] == pytest.approx(shift.logprob_after - shift.logprob_before)
    frame = eb.specificity_frame(shift, reference)
    assert list(frame["measure"]) == ["target Δlog p", "reference KL", "reference Δloss"]
    assert frame["value"].iloc[0] == pytest.approx(shift.delta)
    assert frame["value"].iloc[1] == pytest.approx(reference.kl)
    assert frame["value"].iloc[2] == pytest.approx(reference.loss_after - reference.loss_before)
    # One small panel per measure, each on its own scale (titles, not crowded axis labels).
    chart = eb.specificity_chart(frame).to_dict()
    panels = chart["hconcat"]
    assert [p["title"] for p in panels] == list(frame["measure"])
    for p, v in zip(panels, frame["value"]):
        bar, text = p["layer"]
        assert bar["mark"]["type"] == "bar" and text["mark"]["type"] == "text"
        lo, hi = bar["encoding"]["y"]["scale"]["domain"]
        assert lo <= v <= hi and lo <= 0 <= hi


def test_sweep_view_highlights_the_chosen_directions(analysis):
    rows, base = ab.compute_sweep(analysis, plan_sweep(analysis, "ov", 1, 2, 5), PROMPT, " f")
    df = ab.sweep_frame(rows, {1, 3})
    assert list(df["index"]) == list(range(5)) and list(df["chosen"]) == [
        False,
        True,
        False,
        True,
        False,
    ]
    spec = ab.sweep_chart(df, "t").to_dict()
    assert spec["encoding"]["x"]["field"] == "index"
    assert spec["encoding"]["color"]["scale"]["range"] == [eb.CHOSEN, eb.OTHER]
    # With matched random draws: ticks over the bars, and the bars beyond them marked.
    df = ab.sweep_frame(rows, {1, 3}, base)
    for (_, r), b in zip(df.iterrows(), base):
        assert r["beyond_random"] == (abs(r["delta"]) > max(abs(x) for x in b.deltas))
        assert r["random_mean"] == pytest.approx(sum(b.deltas) / len(b.deltas))
    randoms = ab.sweep_random_frame(rows, base)
    assert len(randoms) == sum(len(b.deltas) for b in base)
    layered = ab.sweep_chart(df, "t", randoms).to_dict()
    assert [lay["mark"]["type"] for lay in layered["layer"]] == ["bar", "tick"]


def test_sweep_axis_turns_symlog_when_a_draw_dwarfs_the_bars():
    bars = pd.DataFrame(
        {"index": [0, 1], "delta": [-0.04, 0.01], "chosen": [True, False], "sigma": [2.0, 1.0],
         "logprob": [-0.3, -0.2]}
    )  # fmt: skip
    near = pd.DataFrame({"index": [0, 1], "delta": [-0.2, 0.1], "edit": ["a", "b"]})
    far = pd.DataFrame({"index": [0, 1], "delta": [-6.0, 0.1], "edit": ["a", "b"]})
    y = ab.sweep_chart(bars, "t", near).to_dict()["layer"][0]["encoding"]["y"]
    assert "scale" not in y and "symlog" not in y["title"]
    y = ab.sweep_chart(bars, "t", far).to_dict()["layer"][0]["encoding"]["y"]
    assert y["scale"]["type"] == "symlog" and y["scale"]["constant"] == pytest.approx(0.01)
    assert "symlog" in y["title"]
    # Short: "Δ log p(target) (symlog)", longer than the plot is tall, pushed the chart's
    # title out of its frame in Chromium.
    assert len(y["title"]) <= 16
    # The data's ends and 0 as the only ticks (Vega's linear steps bunched at the far end).
    assert y["scale"]["domain"] == [-6.0, 0.1] and y["scale"]["nice"] is False
    assert y["axis"]["values"] == [-6.0, 0.0, 0.1]


def test_baseline_frame_and_summary(analysis):
    r = eb.compute_shift(analysis, apply_edits(analysis, EditSet.parse("ov:1:2:0")), PROMPT, " f")
    df = eb.baseline_frame(r)
    assert list(df["kind"]) == ["this edit", *["random draw"] * len(r.random.deltas),
                                f"random mean (std {r.random.std:.4f})"]  # fmt: skip
    assert df["delta"].iloc[0] == pytest.approx(r.delta)
    assert df["delta"].iloc[-1] == pytest.approx(r.random.mean)
    text = eb.baseline_summary(r)
    assert f"{r.target_rank:,}th most decreased of {r.n_vocab:,}" in text


def test_comparison_frame_marks_removed_scaled_and_kept(analysis):
    c = eb.compute_comparison(analysis, "ov:1:2:0,ov:1:2:2*2", "ov", 1, 2, 6)
    df = eb.comparison_frame(c)
    assert list(df["index"]) == list(range(6))
    assert df["status"].iloc[0] == "removed" and df["after"].iloc[0] is pd.NA
    assert df["status"].iloc[2] == "×2"
    assert all(s == "kept" for s in df["status"].iloc[[1, 3, 4, 5]])
    assert (df["cosine"].iloc[1:].abs() > 0.999).all()
    # Doubling direction 2 makes it the largest: matched by cosine, not by index.
    assert df["after"].iloc[2] == 0
    kept = df.iloc[1]
    if kept["cosine"] > 0:
        assert kept["top_after"] == kept["top"]
    else:
        assert kept["top_after"] == kept["bottom"]
    none = eb.comparison_frame(eb.compute_comparison(analysis, "", "mlp_in", 0, None, 3))
    assert list(none["after"]) == [0, 1, 2] and set(none["status"]) == {"kept"}


def test_comparison_always_lists_the_edited_directions(analysis):
    edits = EditSet.parse("ov:1:2:14,ov:1:2:1,mlp_in:0:30")  # OV heads have 16 here
    assert eb.comparison_size(edits, "ov", 1, 2, 6) == 15
    assert eb.comparison_size(edits, "ov", 0, 0, 6) == 6
    c = eb.compute_comparison(analysis, edits.spec(), "ov", 1, 2, 15)
    df = eb.comparison_frame(c, first=6, keep={14, 1})
    assert list(df["index"]) == [*range(6), 14]
    assert df.set_index("index").loc[14, "status"] == "removed"


def test_export_zip_is_a_checkpoint_that_loads(analysis, tmp_path):
    import io
    import zipfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = eb.export_zip(analysis, "mlp_out:0:1")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = set(z.namelist())
        assert {"edited-model/config.json", "edited-model/svd_lens_edits.json"} <= names
        z.extractall(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "edited-model")
    assert model.config.n_layer == analysis.meta.n_layers
    tok = AutoTokenizer.from_pretrained(tmp_path / "edited-model")
    assert tok("the fire")["input_ids"] == analysis.model.tokenizer.encode(
        "the fire", add_special_tokens=False
    )
    # Nothing was written beside the cache.
    assert not list(analysis.settings.cache_dir.rglob("edited-model"))


def test_search_spec_is_the_significant_hits(analysis, low_null):
    from core.search import search

    index = build_index(analysis)
    spec = eb.compute_search_spec(index, "the, cat", 0.2, None)
    hits = search(index, "the, cat", threshold=0.2, top=None)
    want = {
        (h.matrix, h.layer, h.head, h.index)
        for h in hits.hits
        if h.matrix != "qk" and h.significant  # non-significant hits are not removed
    }
    assert want and any(not h.significant for h in hits.hits)
    assert {e.key for e in EditSet.parse(spec)} == want


# ----------------------------------------------------------------------------- page


@pytest.fixture
def page(dash_env, analysis):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.switch_page(EDIT)
    return at.run()


def _edits(at) -> list[str]:
    """Specs in the edit table (the page's first dataframe)."""
    return list(at.main.dataframe[0].value["spec"])


def test_page_adds_measures_undoes_and_resets(page):
    at = page
    assert not at.exception, at.exception
    assert at.title[0].value == "Weight editing"
    assert any("prompt and a target" in i.value for i in at.info)
    at.number_input(key="edit.index").set_value(1).run()
    at.button(key="edit.add").click().run()
    assert not at.exception, at.exception
    assert _edits(at) == ["ov:0:0:1"]
    at.text_input(key="edit.prompt").input(PROMPT)
    at.text_input(key="edit.target").input(" f")
    at.number_input(key="edit.max_new").set_value(3).run()
    assert not at.exception, at.exception
    # The measurement inputs are in the URL with the edits: a link shows the same report.
    assert (at.query_params["prompt"], at.query_params["target"]) == (PROMPT, " f")
    assert at.query_params["new"] == "3" and at.query_params["edits"] == "ov:0:0:1"
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in dict(at.query_params).items():
        fresh.query_params[k] = v
    fresh.switch_page(EDIT)
    fresh.run()
    assert not fresh.exception and fresh.text_input(key="edit.prompt").value == PROMPT
    assert fresh.main.dataframe[1].value.equals(at.main.dataframe[1].value)
    tables = at.main.dataframe  # edits, target log-probs, baselines, before/after directions
    assert len(tables) == 4
    assert len(tables[1].value) == 1 and "delta" in tables[1].value
    assert list(tables[2].value["kind"])[0] == "this edit" and len(tables[2].value) == 5
    assert any("most decreased of" in m.value for m in at.markdown)
    assert len(tables[3].value) == 12 and tables[3].value["status"].iloc[1] == "removed"
    assert len(at.get("vega_lite_chart")) == 2  # specificity and sweep
    assert len(at.code) == 2  # both continuations
    # A second edit, then undo and reset, one click each.
    at.number_input(key="edit.index").set_value(3).run()
    at.button(key="edit.add").click().run()
    assert _edits(at) == ["ov:0:0:1", "ov:0:0:3"]
    at.button(key="edit.undo").click().run()
    assert _edits(at) == ["ov:0:0:1"]
    at.button(key="edit.reset").click().run()
    assert _edits(at) == []
    assert not at.exception, at.exception


def test_search_page_hands_its_query_to_the_edit_page(page, analysis, low_null):
    at = page
    assert not any(b.key == "edit.add_search" for b in at.button)  # no search yet
    at.switch_page(registry_page("search").script).run()
    at.slider(key="search.threshold").set_value(0.2)
    at.number_input(key="search.top").set_value(5)
    at.text_input(key="search.query").input("the, cat").run()
    assert not at.exception, at.exception
    at.switch_page(EDIT).run()
    assert not at.exception, at.exception
    want = eb.compute_search_spec(build_index(analysis), "the, cat", 0.2, 5)
    assert want, "the query should match some OV/MLP direction of the tiny model"
    btn = at.button(key="edit.add_search")
    assert btn.label == f"Remove all {len(EditSet.parse(want))} matches"
    btn.click().run()
    assert not at.exception, at.exception
    assert _edits(at) == [e.spec() for e in EditSet.parse(want)]
    assert at.button(key="edit.add_search").disabled  # all of them are in the set now
    # The URL holds the query and the edits; the search page still shows the query.
    assert at.query_params["q"] == "the, cat" and at.query_params["edits"] == want
    assert at.query_params["threshold"] == "0.2" and at.query_params["top"] == "5"
    params = dict(at.query_params)
    at.switch_page(registry_page("search").script).run()
    assert at.text_input(key="search.query").value == "the, cat"
    assert at.slider(key="search.threshold").value == pytest.approx(0.2)
    assert at.number_input(key="search.top").value == 5
    # A fresh session opened on that URL shows the same edits and the same query.
    fresh = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in params.items():
        fresh.query_params[k] = v
    fresh.switch_page(EDIT)
    fresh.run()
    assert not fresh.exception and _edits(fresh) == _edits(at.switch_page(EDIT).run())
    assert fresh.button(key="edit.add_search").label == btn.label
    # Another processing: the search (and the edits, whose indices refer to it) are gone.
    at.sidebar.radio(key="w.processing").set_value("raw").run()
    assert not at.exception, at.exception
    assert not any(b.key == "edit.add_search" for b in at.button)
    assert _edits(at) == [] and any("were cleared" in i.value for i in at.info)


def test_the_picker_follows_a_hit_and_bad_url_edits_are_one_sentence(dash_env, analysis):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in {"kind": "ov", "layer": "1", "head": "2", "dir": "5"}.items():
        at.query_params[k] = v
    at.switch_page(EDIT)
    at.run()
    assert at.number_input(key="edit.index").value == 5
    bad = AppTest.from_file(APP, default_timeout=TIMEOUT)
    bad.query_params["edits"] = "ov:1"
    bad.switch_page(EDIT)
    bad.run()
    assert not bad.exception
    assert any("edits could not be read" in e.value for e in bad.error)
    assert _edits(bad) == []


def test_edits_stay_in_their_session(dash_env, analysis):
    one = AppTest.from_file(APP, default_timeout=TIMEOUT)
    one.switch_page(EDIT)
    one.run()
    one.button(key="edit.add").click().run()
    assert _edits(one) == ["ov:0:0:0"]
    two = AppTest.from_file(APP, default_timeout=TIMEOUT)
    two.switch_page(EDIT)
    two.run()
    assert not two.exception and _edits(two) == []
    assert _edits(one.run()) == ["ov:0:0:0"]


def test_each_part_of_the_report_reruns_only_for_its_own_inputs(dash_env, analysis, monkeypatch):
    """A new token count reruns only the continuations, a new target only the target's
    shift and the sweep; the unedited continuation is one per prompt, whatever the
    edits, the edited model one per edit set and the sweep's plan one per matrix, which
    also serves fewer directions."""
    import collections

    import core.edit.ablate as ablate
    import dashboard.loaders.edit as edit_loaders

    calls: collections.Counter[str] = collections.Counter()
    order: list[str] = []
    for module, name in (
        (eb, "target_shift"),
        (eb, "reference_specificity"),
        (eb, "continuation"),
        (edit_loaders, "apply_edits"),
        (ablate, "plan_sweep"),  # on the plan's own thread
        (edit_loaders, "unedited_reference"),
        (ablate.SweepPlanJob, "start"),
    ):

        def counted(*args, _real=getattr(module, name), _name=name, **kwargs):
            calls[_name] += 1
            order.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    # An edit and a prompt no other test measures (the caches are shared).
    url = {"edits": "ov:1:1:3", "prompt": "each part on its own", "target": " f", "new": "2"}
    for k, v in url.items():
        at.query_params[k] = v
    at.switch_page(EDIT)
    at.run()
    assert not at.exception and [e.value for e in at.error] == []
    assert len(at.code) == 2 and len(at.main.dataframe) == 4
    # The unedited model's reference pass: at most once per model (another test may
    # have made it), never again for another edit set.
    assert calls.pop("unedited_reference", 0) <= 1
    # The sweep's plan starts on its own thread before the report loads the model.
    assert calls.pop("start") == 1 and order.index("start") < order.index("target_shift")
    assert calls == {
        "target_shift": 1, "reference_specificity": 1, "continuation": 2, "apply_edits": 1,
        "plan_sweep": 1,
    }  # fmt: skip
    at.number_input(key="edit.max_new").set_value(3).run()
    assert calls == {
        "target_shift": 1, "reference_specificity": 1, "continuation": 4, "apply_edits": 1,
        "plan_sweep": 1,
    }  # fmt: skip
    at.text_input(key="edit.target").set_value(" g").run()
    assert not at.exception and [e.value for e in at.error] == []
    # The sweep reruns for the new target, from the same plan.
    assert calls == {
        "target_shift": 2, "reference_specificity": 1, "continuation": 4, "apply_edits": 1,
        "plan_sweep": 1,
    }  # fmt: skip
    # Another edit: its own shift, specificity and continuation; the unedited one is kept.
    at.number_input(key="edit.index").set_value(2).run()
    at.button(key="edit.add").click().run()
    assert calls == {
        "target_shift": 3,
        "reference_specificity": 2,
        "continuation": 5,
        "apply_edits": 2,
        "plan_sweep": 1,
    }  # fmt: skip (no "unedited_reference": made once)
    # Fewer directions swept: a slice of the kept plan, planned no more.
    at.slider(key="edit.n_sweep").set_value(3).run()
    assert not at.exception and [e.value for e in at.error] == []
    assert any("of 3 directions move the target" in c.value for c in at.caption)
    assert calls["plan_sweep"] == 1 and calls["target_shift"] == 3


def test_a_failed_sweep_plan_is_one_sentence_and_planned_again(dash_env, analysis, monkeypatch):
    """A plan that fails on its thread shows its sentence; the next run plans again
    rather than keeping the failure."""
    import core.edit.ablate as ablate
    from core.errors import CoreError

    real, failures = ablate.plan_sweep, [1]

    def flaky(*args, **kwargs):
        if failures:
            failures.pop()
            raise CoreError("The weights changed on disk; reload the model.")
        return real(*args, **kwargs)

    monkeypatch.setattr(ablate, "plan_sweep", flaky)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    # A matrix and a prompt no other test sweeps (the plans are shared).
    url = {"kind": "ov", "layer": "1", "head": "3", "prompt": "a plan that fails once"}
    for k, v in {**url, "target": " f"}.items():
        at.query_params[k] = v
    at.switch_page(EDIT)
    at.run()
    assert not at.exception
    (shown,) = [e.value for e in at.error]
    assert "The weights changed on disk" in shown and "reload the model" in shown
    at.run()
    assert not at.exception and [e.value for e in at.error] == []
    assert any("directions move the target" in c.value for c in at.caption)
