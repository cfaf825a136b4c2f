"""The registry of embedded models and what resolve_model makes of their names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from core.errors import ModelLoadError
from core.model import embedded
from core.model.loading import resolve_model
from core.settings import DEFAULT_MODEL_DIR


def test_default_and_demo_name_the_demo_model() -> None:
    assert embedded.lookup("default") is embedded.DEMO
    assert embedded.lookup("") is embedded.DEMO
    assert embedded.lookup("demo-gpt2") is embedded.DEMO
    assert embedded.lookup("smollm2-135m") is embedded.SMOLLM2
    assert embedded.lookup("gpt2") is None
    assert resolve_model("default") == resolve_model("demo-gpt2") == str(DEFAULT_MODEL_DIR)


def test_names_are_unique_and_summaries_are_two_sentences() -> None:
    names = [n for m in embedded.EMBEDDED for n in (m.name, *m.aliases)]
    assert len(names) == len(set(names))
    for m in embedded.EMBEDDED:
        assert m.summary.count(". ") == 1 and m.summary.endswith("."), m.name


def test_a_missing_build_says_how_to_build_it(tmp_path: Path, monkeypatch) -> None:
    gone = dataclasses.replace(embedded.SMOLLM2, directory=tmp_path / "nope")
    monkeypatch.setattr(embedded, "EMBEDDED", (embedded.DEMO, gone))
    assert not gone.built
    with pytest.raises(ModelLoadError, match="make install"):
        resolve_model("smollm2-135m")


def test_by_directory_finds_the_entry() -> None:
    assert embedded.by_directory(DEFAULT_MODEL_DIR) is embedded.DEMO
    assert embedded.by_directory("/nonexistent/dir") is None


def test_an_embedded_models_directory_is_known_by_its_name(tmp_path: Path, monkeypatch) -> None:
    """However its directory is written, an embedded model is filed under its name (one
    cache entry); names, aliases, hub ids and other directories stay as they are."""
    monkeypatch.chdir(DEFAULT_MODEL_DIR.parent.parent)
    for spelling in (str(DEFAULT_MODEL_DIR), "models/demo-gpt2", "models/demo-gpt2/"):
        assert embedded.spec_name(spelling) == "demo-gpt2", spelling
    assert embedded.spec_name("./models/../models/demo-gpt2") == "demo-gpt2"
    for spec in ("default", "demo-gpt2", "gpt2", "EleutherAI/pythia-160m@step3000", str(tmp_path)):
        assert embedded.spec_name(spec) == spec
    assert embedded.spec_name("a" * 5000) == "a" * 5000


def test_a_checkpoint_directory_is_known_by_its_resolved_path(tmp_path: Path, monkeypatch) -> None:
    """Every spelling of a checkpoint folder that is not embedded names one model (its
    resolved path); a folder without a config.json is left as written, for the loader's
    message."""
    ckpt = tmp_path / "models" / "mine"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text("{}")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    want = str(ckpt.resolve())
    for spelling in ("models/mine", "./models/mine/", "other/../models/mine", str(ckpt)):
        assert embedded.spec_name(spelling) == want, spelling
    assert embedded.spec_name("other") == "other"
    assert embedded.spec_name("models/missing") == "models/missing"


def test_the_command_line_files_a_directory_under_its_embedded_name(tmp_path: Path) -> None:
    from core.cli.common import common_parser, settings_from_args

    parser = common_parser()
    args = parser.parse_args(["--model", str(DEFAULT_MODEL_DIR), "--cache-dir", str(tmp_path)])
    assert settings_from_args(args).model == "demo-gpt2"
