"""The model picker lists the embedded models once each; an unbuilt default falls back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.model import embedded
from dashboard import components, config
from tests.dashboard.conftest import APP


def test_picker_lists_every_embedded_model_once(monkeypatch, tmp_path) -> None:
    models = tmp_path / "models"
    (models / "mine").mkdir(parents=True)
    (models / "mine" / "config.json").write_text("{}")
    monkeypatch.setenv("SVDLENS_MODELS_DIR", str(models))
    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", "default")
    opts = components.model_options("default")
    assert opts[0] == "default"
    assert "smollm2-135m" in opts and "demo-gpt2" not in opts  # default already is the demo
    assert str(models / "mine") in opts
    assert components.model_options("gpt2")[-1] == "gpt2"
    label = components._model_label("smollm2-135m")
    assert "SmolLM2" in label and ("not built" in label) == (not embedded.SMOLLM2.built)


def test_unbuilt_embedded_default_falls_back_to_the_demo(monkeypatch, tmp_path) -> None:
    gone = dataclasses.replace(embedded.SMOLLM2, directory=tmp_path / "nope")
    monkeypatch.setattr(embedded, "EMBEDDED", (embedded.DEMO, gone))
    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", "smollm2-135m")
    assert config.default_model() == "default"
    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", "/some/ckpt")
    assert config.default_model() == "/some/ckpt"


@pytest.fixture
def chosen(dash_env, analysis, monkeypatch):
    """The tiny model registered as a ``first_head`` model, and the head it should open
    on (words: the tiny vocabulary's alphabetic tokens)."""
    from core.label import first_head as fh

    tiny = dataclasses.replace(
        embedded.SMOLLM2, directory=Path(dash_env["SVDLENS_DEFAULT_MODEL"]), gguf=None
    )
    monkeypatch.setattr(embedded, "EMBEDDED", (embedded.DEMO, tiny))
    words = frozenset(t.strip().lower() for t in analysis.tokens.raw if t.strip().isalpha())
    monkeypatch.setattr(fh, "dictionary_words", lambda: words)
    return fh.first_head(analysis, store=False)


def _shown(at: AppTest) -> tuple[str, int, int | None]:
    ss = at.session_state
    return ss["sel.kind"], ss["sel.layer"], ss["sel.head"]


def test_a_first_head_model_opens_on_its_chosen_head(chosen) -> None:
    """A session without a component in its URL opens a ``first_head`` model on the head
    core/label/first_head.py picks; a URL that names a component keeps it."""
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception
    assert _shown(at) == ("ov", chosen.layer, chosen.head)

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["kind"] = "mlp_in"
    at.query_params["layer"] = "0"
    at.run()
    assert _shown(at)[:2] == ("mlp_in", 0)


def test_the_chosen_head_survives_a_stopped_first_run(chosen, monkeypatch) -> None:
    """A first run stopped before the choice (a click on the page list while the first
    page loads ends it the same way) still opens the session on the chosen head."""
    from dashboard import loaders

    assert (chosen.layer, chosen.head) != (0, 0)  # else this test could not fail
    real, calls = loaders.analysis_or_error, []

    def stopped_once(sel):
        calls.append(sel)
        if len(calls) == 1:
            raise RuntimeError("first run stopped")
        return real(sel)

    monkeypatch.setattr(loaders, "analysis_or_error", stopped_once)
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert at.exception  # the stopped run
    at.run()
    assert not at.exception
    assert _shown(at) == ("ov", chosen.layer, chosen.head)
