"""A cache-only search (the CLI's one-question process) reads its index, its query words
and its null from the entry's parts, reads no kind's file to build the index, and answers
exactly as an index built from the decompositions of a loaded model."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.analysis import open_analysis
from core.cache import reading
from core.search.engine import build_index, search
from core.search.memo import MemoTokenizer
from core.settings import MATRIX_KINDS, Settings
from tests.tiny_models import save_checkpoint

KINDS = ("ov", "mlp_in", "mlp_out")
QUERIES = ("fire, water", "fire", "water, fire, the")


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    ckpt = save_checkpoint("gpt2", tmp_path / "gpt2", seed=5)
    return Settings(model=str(ckpt), cache_dir=tmp_path / "cache", device="cpu")


def _answers(index) -> dict[str, list]:
    return {q: [h.to_json() for h in search(index, q, top=8, k=5).hits] for q in QUERIES}


def _spy(monkeypatch) -> list[str]:
    names: list[str] = []
    for fn in ("_map_file", "_read_file"):
        real = getattr(reading, fn)

        def spy(out, fname, *a, _real=real, **k):
            names.append(fname)
            return _real(out, fname, *a, **k)

        monkeypatch.setattr(reading, fn, spy)
    return names


def test_cache_only_index_reads_parts_and_answers_as_a_built_one(settings, monkeypatch):
    ref_a = open_analysis(settings)
    assert ref_a.source.loaded
    reference = _answers(build_index(ref_a, KINDS))  # computed, and saved as a part
    assert any(reference.values()), "the queries should find something"

    names = _spy(monkeypatch)
    a = open_analysis(settings, lazy=True)
    assert not a.source.loaded
    index = build_index(a, KINDS)
    kind_files = {f"{k}.safetensors" for k in MATRIX_KINDS}
    assert not kind_files & set(names), names
    assert isinstance(index.tokenizer, MemoTokenizer)  # built now, from tokenizer.json
    assert _answers(index) == reference

    # The next call reads the memo too: words the vocabulary spells never parse the
    # tokenizer, and give its answers.
    again = build_index(open_analysis(settings, lazy=True), KINDS)
    assert isinstance(again.tokenizer, MemoTokenizer)
    words = [t.strip() for t in again.tokens.raw if t.startswith(" ") and t[1:].isalpha()]
    query = ", ".join(words[:3])
    hits = [h.to_json() for h in search(again, query, top=8, k=5).hits]
    assert again.tokenizer._load is not None, "the words should all come from the memo"
    assert hits == [h.to_json() for h in search(build_index(ref_a, KINDS), query, top=8, k=5).hits]
    assert _answers(again) == reference
    assert again.tokenizer.encode("zzqx fire") == ref_a.tokenizer.encode(
        "zzqx fire", add_special_tokens=False
    )
    assert again.tokenizer._load is None  # a text the memo lacks loads the tokenizer


def test_one_question_maps_the_files(settings) -> None:
    open_analysis(settings)
    a = open_analysis(settings, lazy=True)
    held = a.svd.kinds
    assert isinstance(held, reading.LazyTable)
    assert held.record("ov") is not None  # from the manifest, no file read
    res = held["ov"]
    assert held.record("ov") is None  # in memory now: its value is what holds
    # A view of a private map of the file, not a copy.
    assert not res.decomposition.S.untyped_storage().resizable()
    ref = open_analysis(settings).svd.kinds["ov"]
    assert (res.decomposition.S == ref.decomposition.S).all()
