"""The model picker lists the embedded models once each; an unbuilt default falls back."""

from __future__ import annotations

import dataclasses

from core.model import embedded
from dashboard import components, state


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
    assert state.default_model() == "default"
    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", "/some/ckpt")
    assert state.default_model() == "/some/ckpt"
