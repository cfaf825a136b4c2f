"""The background warm-up of the search nulls: every common shape once, the likeliest
first, the same nulls a query computes, and a shape asked for twice at once computed once."""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
from collections import Counter

import pytest
import torch

import core.search.ranking as ranking
from core.analysis import analysis_from_weights
from core.model.random import random_weights
from core.search.engine import SearchIndex, build_index, search
from core.search.null import ZIPF_EDGES, frequency_bins, index_pool, null_for
from core.search.warm import NullWarmer, common_shapes, warm_nulls
from core.settings import Settings
from tests.tiny_models import make_tokenizer

KINDS = ("ov", "mlp_in", "mlp_out")
QUERIES = ("fire", "water", "the", "mountain", "fire, water", "the, kidney", "water, the")


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> SearchIndex:
    tok = make_tokenizer(1000)
    raw = random_weights(2, 4, 64, 256, len(tok), seed=5)
    a = analysis_from_weights(
        raw,
        tok,
        Settings(model="warm", cache_dir=tmp_path_factory.mktemp("c"), kinds=KINDS, device="cpu"),
    )
    return build_index(a, tokenizer=tok)


def _fresh(index: SearchIndex) -> SearchIndex:
    """The same index with nothing computed and nothing read from or written to disk."""
    return dataclasses.replace(index, store=None, nulls={}, memo={})


def test_shapes_are_every_bin_multiset_once_likeliest_first(index) -> None:
    shapes = common_shapes(index, 3)
    bins = range(len(ZIPF_EDGES) + 1)
    want = {(n, c) for n in (1, 2, 3) for c in itertools.combinations_with_replacement(bins, n)}
    assert len(shapes) == len(want) == 5 + 15 + 35
    assert set(shapes) == want
    # The chance of each sorted bin tuple, by summing over every ordered draw of words
    # from the pool (not the multinomial formula the code uses).
    pool = index_pool(index)
    assert pool.by_bin is not None
    share = {b: len(pool.by_bin.get(b, ())) / len(pool.ids) for b in bins}
    chance: Counter = Counter()
    for n in (1, 2, 3):
        for draw in itertools.product(bins, repeat=n):
            chance[(n, tuple(sorted(draw)))] += float(torch.tensor([share[b] for b in draw]).prod())
    assert [n for n, _ in shapes] == sorted(n for n, _ in shapes)
    for (n1, b1), (n2, b2) in itertools.pairwise(shapes):
        if n1 == n2:
            assert chance[(n1, b1)] >= chance[(n2, b2)] - 1e-12, (b1, b2)
    assert sum(chance[s] for s in shapes if s[0] == 2) == pytest.approx(1.0)


def test_a_query_after_the_warm_up_computes_no_null(index, monkeypatch) -> None:
    warmed = _fresh(index)
    assert warm_nulls(warmed, kinds=KINDS, max_concepts=2) == 20
    reference = {}
    for q in QUERIES:
        # Computed for this query alone, on an index that never warmed.
        n = len([c for c in q.split(",")])
        bins = frequency_bins([c.strip() for c in q.split(",")])
        reference[q] = null_for(_fresh(index), n, "token", KINDS, 0.0, bins=bins)

    def refuse(*args, **kwargs):
        raise AssertionError("a null was computed")

    monkeypatch.setattr(ranking, "best_scores", refuse)
    for q in QUERIES:
        res = search(warmed, q, kinds=KINDS)
        assert res.null is not None and reference[q] is not None
        assert torch.equal(res.null.best, reference[q].best), q
        assert res.null.bins == reference[q].bins


def test_one_shape_asked_for_twice_at_once_is_computed_once(index, monkeypatch) -> None:
    shared = _fresh(index)
    real = ranking.best_scores
    calls = []

    def slow(idx, *args, **kwargs):
        # Counted for this index only: a warm-up thread an earlier test started on
        # another index can still be running, and it calls the patched function too.
        if idx is shared:
            calls.append(1)
            time.sleep(0.3)  # long enough for the second thread to arrive meanwhile
        return real(idx, *args, **kwargs)

    monkeypatch.setattr(ranking, "best_scores", slow)
    got = []
    threads = [
        threading.Thread(
            target=lambda: got.append(null_for(shared, 1, "token", KINDS, 0.0, draws=5, bins=(2,)))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(got) == 2 and got[0] is got[1]


def test_the_warmer_holds_every_shape_and_can_be_stopped(index) -> None:
    w = NullWarmer(_fresh(index), kinds=KINDS, max_concepts=2).start()
    assert w.wait(300)
    assert w.error is None and w.held == w.total == 20
    stopped = _fresh(index)
    s = NullWarmer(stopped, kinds=KINDS)
    s.stop()
    assert s.start().wait(60)
    assert s.held == 0 and not stopped.nulls


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="no per-thread priority here")
def test_the_warmer_runs_at_the_lowest_priority(index, monkeypatch) -> None:
    """A query typed during the warm-up gets the cores first: the warmer's thread (and
    so the worker threads torch starts for it) is niced to 19; the caller's is not."""
    import core.search.warm as warm

    seen = []

    def record(*args, **kwargs):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return 0

    monkeypatch.setattr(warm, "warm_nulls", record)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert NullWarmer(_fresh(index)).start().wait(60)
    assert seen == [19]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
