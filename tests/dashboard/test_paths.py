"""What a URL or the model box may make the server open, and user text shown literally.

The dashboard opens its embedded models, checkpoints under SVDLENS_MODELS_DIR, and hub
ids only with SVDLENS_ALLOW_HUB=1; a refused value gets one sentence, and no value a
visitor typed is ever rendered as markdown.
"""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from core.errors import SpecError
from dashboard import config
from dashboard.markup import JOINER, plain
from dashboard.registry import page
from tests.dashboard.test_app import app, errors, table


def raw_errors(at) -> list[str]:
    """The error boxes' markdown source, as Streamlit renders it."""
    return [e.value for e in at.error]


GRID = page("grid").script
INJECTION = "[x](http://evil)![i](http://evil/i.png)"


def rendered(markdown: str) -> str:
    """HTML of ``markdown`` by an independent CommonMark renderer."""
    return MarkdownIt("commonmark").render(markdown)


@pytest.fixture(autouse=True)
def _env(dash_env, analysis, monkeypatch):
    monkeypatch.delenv("SVDLENS_ALLOW_HUB", raising=False)
    return dash_env


@pytest.mark.parametrize(
    "text",
    [
        INJECTION,
        "<img src=x onerror=alert(1)>",
        "http://evil.example/a WWW.evil.example me@evil.example",
        "**bold** _it_ `code` $x^2$ :red[red] :material/home: # head",
        "a\\]b\\\\c",
    ],
)
def test_plain_shows_text_literally(text: str) -> None:
    source = plain(text)
    # GFM (Streamlit's flavour) links bare "http://" and "www." text: none may survive.
    assert "://" not in source and "www." not in source.lower()
    html = rendered(source)
    assert "<a" not in html and "<img" not in html and "<strong" not in html
    assert "<code" not in html and "<em" not in html and "<h1" not in html
    # What the reader sees is what was typed (HTML entities aside).
    shown = unescape(html.removeprefix("<p>").removesuffix("</p>\n"))
    assert shown.replace(JOINER, "") == text


def test_check_model_allows_only_embedded_and_models_dir(dash_root: Path, monkeypatch) -> None:
    config.check_model("default")
    config.check_model(str(dash_root / "models" / "tiny-gpt2"))
    config.check_model(str(dash_root / "models" / "not-there-yet"))  # fails later, to load
    for spec in (
        "/etc",
        str(dash_root / "models" / ".." / "cache"),
        "~",
        "a" * 5000,
        "../x",
        "models/demo-gpt2/no-such/../../..",
        "a/b/c",
    ):
        with pytest.raises(SpecError, match="only its embedded models"):
            config.check_model(spec)
    with pytest.raises(SpecError, match="Hugging Face ids are off"):
        config.check_model("attacker/huge-model")
    monkeypatch.setenv("SVDLENS_ALLOW_HUB", "1")
    config.check_model("attacker/huge-model")


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("/etc", "only its embedded models"),
        ("/", "only its embedded models"),
        ("models/demo-gpt2/heldout/../../..", "only its embedded models"),
        ("attacker/huge-model", "Hugging Face ids are off"),
    ],
)
def test_refused_url_model_gets_one_sentence(model: str, words: str, monkeypatch) -> None:
    import core.model.loading
    import core.model.source

    def no_load(*_: object, **__: object) -> None:
        raise AssertionError("the dashboard tried to load a refused model")

    monkeypatch.setattr(core.model.loading, "_local_snapshot", no_load)
    monkeypatch.setattr(core.model.source, "load_model", no_load)
    at = app({"model": model}, script=GRID)
    assert not at.exception, at.exception
    msgs = errors(at)
    assert len(msgs) == 1 and words in msgs[0] and "Could not open model" in msgs[0], msgs
    assert msgs[0].count(". ") == 0 and msgs[0].endswith(".")  # one sentence
    # The sidebar still works: pick the good model and the page recovers.
    monkeypatch.undo()
    good = [o for o in at.sidebar.selectbox(key="w.model").options if "tiny-gpt2" in o]
    at.sidebar.selectbox(key="w.model").set_value(good[0]).run()
    assert not at.exception and errors(at) == [] and len(table(at)) == 15


def test_hub_ids_open_when_allowed(monkeypatch) -> None:
    monkeypatch.setenv("SVDLENS_ALLOW_HUB", "1")
    at = app({"model": "attacker/huge-model"}, script=GRID)
    assert not at.exception
    msgs = errors(at)
    # Allowed now, so the loader itself answers (offline here): not the dashboard's refusal.
    assert len(msgs) == 1 and "Hugging Face ids are off" not in msgs[0], msgs
    assert "local Hugging Face cache" in msgs[0]


def test_markdown_in_the_url_is_shown_as_text() -> None:
    at = app({"model": INJECTION}, script=GRID)
    assert not at.exception
    shown = [e for e in raw_errors(at) if "Could not open model" in e]
    assert len(shown) == 1
    html = rendered(shown[0])
    assert "<a" not in html and "<img" not in html and INJECTION in html.replace(JOINER, "")
    # Every markdown body on the page and in the sidebar is free of live links.
    bodies = [m.value for m in at.markdown] + [c.value for c in at.caption] + raw_errors(at)
    assert all("<a " not in rendered(b) and "<img" not in rendered(b) for b in bodies)
