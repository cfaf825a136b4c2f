"""The shared selection: URL parsing, URL writing, and validation against a model."""

from __future__ import annotations

from pathlib import Path

from core.edit import Edit, EditSet
from core.settings import BLOCK_NAMES, KIND_NAMES, MATRIX_KINDS
from dashboard import config, state
from dashboard.builders.names import component_label
from dashboard.components import available_kinds, validate


def test_params_round_trip():
    sel = state.Selection("m", "raw", "qk", 3, 5, direction=2)
    back, errors = state.from_params(sel.to_params())
    assert errors == [] and back == sel
    mlp = state.Selection("m", "post", "mlp_out", 1, None)
    assert "head" not in mlp.to_params()
    assert state.from_params(mlp.to_params())[0] == mlp
    assert mlp.label() == "L1 MLP out" and sel.label() == "L3 H5 QK"


def test_from_params_defaults_and_bad_values(monkeypatch):
    monkeypatch.delenv("SVDLENS_DEFAULT_MODEL", raising=False)
    sel, errors = state.from_params({})
    assert sel == state.Selection("default", "post", "ov", 0, 0) and errors == []
    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", "/some/ckpt")
    sel, errors = state.from_params({"layer": "x", "head": "1.5", "proc": "boiled"})
    assert sel.model == "/some/ckpt" and sel.layer == 0 and sel.head == 0
    assert sel.processing == "post" and len(errors) == 3


def test_a_url_names_a_model_as_the_command_line_does(monkeypatch, tmp_path):
    """A link written with another spelling of a model's folder opens the same model (one
    cache entry), and the picker lists a checkpoint folder once, under that name."""
    from core.settings import DEFAULT_MODEL_DIR

    monkeypatch.chdir(DEFAULT_MODEL_DIR.parent.parent)
    assert state.from_params({"model": "./models/demo-gpt2/"})[0].model == "demo-gpt2"
    ckpt = tmp_path / "mine"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (tmp_path / "x").mkdir()
    sel = state.from_params({"model": str(tmp_path / "x" / ".." / "mine") + "/"})[0]
    assert sel.model == str(ckpt.resolve())
    monkeypatch.setenv("SVDLENS_MODELS_DIR", str(tmp_path))
    assert config.local_models() == [sel.model]


def test_settings_from_environment(monkeypatch, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "not-a-model").mkdir()
    monkeypatch.setenv("SVDLENS_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("SVDLENS_CACHE_DIR", str(tmp_path / "c"))
    assert config.local_models() == [str(tmp_path / "a")]
    assert config.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SVDLENS_MODELS_DIR")
    assert config.models_dir() == Path(config.REPO_ROOT) / "models"


def test_validate_against_a_model(analysis):
    m = analysis.meta
    ok = state.Selection("x", "post", "ov", 1, 2)
    assert validate(ok, analysis) == (ok, [])
    fixed, errors = validate(state.Selection("x", "post", "ov", 7, 9), analysis)
    assert (fixed.layer, fixed.head) == (m.n_layers - 1, m.n_heads - 1)
    assert any("Layer 7" in e for e in errors)
    fixed, errors = validate(state.Selection("x", "post", "mlp_gate", 0, None), analysis)
    assert fixed.kind == available_kinds(analysis)[0] and "gate" in errors[0]
    fixed, errors = validate(state.Selection("x", "post", "mlp_in", 1, 3), analysis)
    assert fixed.head is None and errors == []
    fixed, errors = validate(state.Selection("x", "post", "ov", 0, 0, direction=999), analysis)
    assert fixed.direction is None and "Direction 999" in errors[0]


def test_kind_names_are_defined_once_for_every_kind():
    assert list(KIND_NAMES) == list(BLOCK_NAMES) == list(MATRIX_KINDS)
    assert BLOCK_NAMES["ov"] == "OV heads" and BLOCK_NAMES["mlp_in"] == KIND_NAMES["mlp_in"]
    assert component_label("embed", 0) == "Embedding"
    assert component_label("mlp_gate", 2) == "L2 MLP gate"
    assert state.Selection("m", kind="ov", layer=1, head=3).label() == "L1 H3 OV"
    # A head left over from a head kind is not shown for an MLP matrix.
    assert state.Selection("m", kind="mlp_in", layer=1, head=3).label() == "L1 MLP in"


def test_edit_history_push_undo_reset():
    h = state.EditHistory("m", "post")
    assert len(h.current) == 0 and h.undo().current == EditSet()
    e1, e2 = Edit("ov", 0, 1, 2), Edit("mlp_in", 1, None, 0, 0.5)
    h2 = h.push(h.current.add(e1)).push(EditSet((e1, e2)))
    assert h2.current.edits == (e1, e2)
    assert h2.undo().current.edits == (e1,)
    r = h2.reset()
    assert len(r.current) == 0 and r.undo().current == h2.current  # reset is undoable
    assert h2.push(h2.current) is h2
    assert h.matches("m", "post") and not h.matches("m", "raw")


def test_view_options_round_trip_through_params():
    from dashboard.viewstate import GridView, MeasureView, PromptView, SearchQuery, SpectraView

    g = GridView(end="bottom", n=36, k=6, filters=("alpha", "ascii"), control=True)
    s = SearchQuery("fire, flames", 0.3, 7, ("ov", "mlp_in"), "pinv")
    sp = SpectraView("layers")
    m = MeasureView("The house was on", " fire", 5)
    # The Prompt page's prompt and target have names of their own: both pages keep theirs.
    pv = PromptView("The king and the queen", " castle", 3, 1, "prob")
    views = (g.to_params(), s.to_params(), sp.to_params(), m.to_params(), pv.to_params())
    assert sum(map(len, views)) == len({k for v in views for k in v})
    params = {k: v for view in views for k, v in view.items()}
    errors: list[str] = []
    assert MeasureView.from_params(params, errors) == m
    assert PromptView.from_params(params, errors) == pv
    assert GridView.from_params(params, errors) == g
    assert SearchQuery.from_params(params, errors) == s
    assert SpectraView.from_params(params, errors) == sp
    assert errors == []
    # Defaults write nothing: a plain view keeps a short URL.
    assert GridView().to_params() == SpectraView().to_params() == SearchQuery().to_params() == {}
    assert MeasureView().to_params() == PromptView().to_params() == {}
    assert SearchQuery(query="  ").to_params() == {}


def test_bad_view_params_fall_back_with_one_sentence_each():
    from dashboard.viewstate import GridView, SearchQuery

    errors: list[str] = []
    g = GridView.from_params({"end": "up", "n": "x", "k": "2", "filters": "alpha,zz"}, errors)
    assert g == GridView(filters=("alpha",)) and len(errors) == 4
    errors.clear()
    q = SearchQuery.from_params({"q": "fire", "threshold": "2", "method": "magic"}, errors)
    assert q == SearchQuery("fire") and len(errors) == 2
    assert all(e.endswith(".") for e in errors)
