"""The shipped reference corpus: readable without apt or network, every source in both
splits, unique ids, a digest that names its content."""

from __future__ import annotations

import json
import lzma

import pytest

from core.activations.corpus import DEFAULT_CORPUS, Corpus, Document, load_corpus
from core.errors import SpecError

SOURCES = {"gcide", "wordnet", "fortunes", "shakespeare", "man", "docstrings"}


def test_shipped_corpus_has_every_source_in_both_splits():
    c = load_corpus()
    assert DEFAULT_CORPUS.stat().st_size < 1.5e6
    assert len({d.id for d in c.documents}) == len(c.documents)
    for split in ("train", "heldout"):
        assert {d.source for d in c.split(split)} == SOURCES
    chars = sum(len(d.text) for d in c.documents)
    assert chars > 1_000_000  # several hundred thousand tokens at ~4 characters a token
    # The sources are mixed, so a small token budget reads several of them.
    assert len({d.source for d in list(c.split("train"))[:50]}) >= 4
    sources = (DEFAULT_CORPUS.parent / "SOURCES.md").read_text()
    assert all(f"`{s}`" in sources for s in SOURCES)


def test_digest_follows_content(tmp_path):
    docs = [Document(0, "t", "train", "one"), Document(1, "t", "heldout", "two")]
    path = tmp_path / "c.jsonl.xz"
    path.write_bytes(lzma.compress("".join(json.dumps(d.__dict__) + "\n" for d in docs).encode()))
    c = load_corpus(path)
    assert c.digest == Corpus.of(docs).digest
    assert Corpus.of([docs[0], Document(1, "t", "heldout", "two!")]).digest != c.digest
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(SpecError, match="not a document"):
        load_corpus(bad)
    with pytest.raises(SpecError, match="No corpus file"):
        load_corpus(tmp_path / "missing.jsonl")
