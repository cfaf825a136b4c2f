"""Edits from a semantic search: the hits of the same search, editable ones only, from
an index of the edit kinds or of every kind (the search page's)."""

from __future__ import annotations

import pytest

from core.edit.from_search import edits_from_hits, search_edits
from core.edit.rank_one import EDIT_KINDS
from core.errors import SpecError
from core.search import build_index, search


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


def test_search_edits_are_the_editable_hits(indexes):
    edit_index, full_index = indexes
    assert "qk" in full_index.kinds and "qk" not in edit_index.kinds
    res = search(full_index, "the, cat", threshold=0.2, top=None)
    want = {(h.matrix, h.layer, h.head, h.index) for h in res.hits if h.matrix in EDIT_KINDS}
    assert want, "the query should match something"
    for index in indexes:
        got = search_edits(index, "the, cat", threshold=0.2)
        assert {e.key for e in got} == want
        assert all(e.scale == 0.0 for e in got)
    top = search_edits(full_index, "the, cat", threshold=0.2, top=2, scale=0.5)
    assert len(top) == 2 and {e.scale for e in top} == {0.5}


def test_signs_pick_one_end(indexes):
    index = indexes[0]
    res = search(index, "the, cat", threshold=0.2, top=None)
    for sign in ("positive", "antipodal"):
        want = {(h.matrix, h.layer, h.head, h.index) for h in res.hits if h.sign == sign}
        assert want, sign
        got = search_edits(index, "the, cat", threshold=0.2, signs=(sign,))
        assert {e.key for e in got} == want


def test_an_index_without_edit_kinds_is_refused(analyses):
    with pytest.raises(SpecError, match="holds no OV or MLP directions"):
        search_edits(build_index(analyses("gpt2"), ["qk"]), "the, cat")
