"""The opening head: word share, the choice over late layers, and its stored JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.label import first_head as fh
from core.query import directions


@pytest.fixture(scope="module")
def tiny_analysis(checkpoints, tmp_path_factory):
    from core.analysis import open_analysis
    from core.settings import Settings

    cache = tmp_path_factory.mktemp("fh-cache")
    return open_analysis(Settings(model=str(checkpoints["llama"]), device="cpu", cache_dir=cache))


WORDS = frozenset({"fire", "water", "since", "about"})


def test_word_share_counts_distinct_dictionary_words() -> None:
    assert fh.word_share([" fire", "Fire", "fire", " water"], WORDS) == pytest.approx(2 / 4)
    assert fh.word_share(["<0xD3>", "\\n", "ing", ");"], WORDS) == 0.0
    assert fh.word_share([], WORDS) == 0.0


def test_first_head_is_the_late_head_with_the_best_share(tiny_analysis, monkeypatch) -> None:
    a = tiny_analysis
    words = frozenset(
        t.strip().lower() for t in a.tokens.raw if t.strip().isalpha() and len(t.strip()) > 2
    )
    monkeypatch.setattr(fh, "dictionary_words", lambda: words)
    got = fh.first_head(a, n=3, k=5)
    m = a.meta
    late = range(m.n_layers - max(1, m.n_layers // 3), m.n_layers)
    shares = {}
    for layer in late:
        for head in range(m.n_heads):
            toks = [
                t
                for d in directions(a, "ov", layer, head, n=3, k=5)
                for t, _, _ in (*d.top, *d.bottom)
            ]
            shares[(layer, head)] = fh.word_share(toks, words)
    assert got.layer in late
    assert got.score == pytest.approx(max(shares.values()))
    assert shares[(got.layer, got.head)] == pytest.approx(got.score)
    stored = Path(a.settings.cache_dir) / "first_head"
    (path,) = stored.iterdir()
    assert json.loads(path.read_text())["layer"] == got.layer
    # A stored choice is read back, not recomputed.
    monkeypatch.setattr(fh, "dictionary_words", lambda: pytest.fail("recomputed"))
    assert fh.first_head(a, n=3, k=5) == got
