"""Edits from a semantic search: the hits of the same search, editable ones only, from
an index of the edit kinds or of every kind (the search page's)."""

from __future__ import annotations

import pytest
import torch

import core.search.engine as engine
from core.edit.from_search import edits_from_hits, search_edits
from core.edit.rank_one import EDIT_KINDS
from core.errors import SpecError
from core.search import build_index, search
from core.search.null import Null


@pytest.fixture(scope="module")
def indexes(analyses):
    a = analyses("gpt2")
    return build_index(a, EDIT_KINDS), build_index(a)


def test_hits_become_edits():
    hits = [
        {"matrix": "ov", "layer": 1, "head": 2, "index": 0},
        {"matrix": "qk", "layer": 0, "head": 1, "index": 3},
        {"matrix": "mlp_out", "layer": 0, "head": None, "index": 4},
    ]
    assert edits_from_hits(hits).spec() == "ov:1:2:0,mlp_out:0:4"
    assert edits_from_hits(hits, 0.5).spec() == "ov:1:2:0*0.5,mlp_out:0:4*0.5"


@pytest.fixture
def cut(monkeypatch):
    """A null whose random bests all score ``score``: hits above it are significant
    (a random model has no real matches to find)."""
    level = {"score": 0.0}

    def fake(index, n, method, kinds, threshold, **_):
        return Null(method, n, threshold, tuple(kinds), torch.full((20,), level["score"]))

    monkeypatch.setattr(engine, "null_for", fake)
    return level


def test_search_edits_are_the_significant_editable_hits(indexes, cut):
    edit_index, full_index = indexes
    assert "qk" in full_index.kinds and "qk" not in edit_index.kinds
    every = search(edit_index, "the, cat", threshold=0.2, top=None).hits
    cut["score"] = sorted(h.score for h in every)[len(every) // 2]
    res = search(full_index, "the, cat", threshold=0.2, top=None)
    want = {
        (h.matrix, h.layer, h.head, h.index)
        for h in res.hits
        if h.matrix in EDIT_KINDS and h.significant
    }
    assert want, "the query should match something"
    assert any(not h.significant for h in res.hits)
    for index in indexes:
        got = search_edits(index, "the, cat", threshold=0.2)
        assert {e.key for e in got} == want
        assert all(e.scale == 0.0 for e in got)
    top = search_edits(full_index, "the, cat", threshold=0.2, top=2, scale=0.5)
    assert len(top) == 2 and {e.scale for e in top} == {0.5}


def test_signs_pick_one_end(indexes, cut):
    index = indexes[0]
    every = search(index, "the, cat", threshold=0.2, top=None).hits
    cut["score"] = sorted(h.score for h in every)[len(every) // 2]
    res = search(index, "the, cat", threshold=0.2, top=None)
    for sign in ("positive", "antipodal"):
        want = {
            (h.matrix, h.layer, h.head, h.index)
            for h in res.hits
            if h.sign == sign and h.significant
        }
        assert want, sign
        got = search_edits(index, "the, cat", threshold=0.2, signs=(sign,))
        assert {e.key for e in got} == want


def test_an_index_without_edit_kinds_is_refused(analyses):
    with pytest.raises(SpecError, match="holds no OV or MLP directions"):
        search_edits(build_index(analyses("gpt2"), ["qk"]), "the, cat")
