"""Search significance: planted concepts against random queries of the same shape, the
null's p and z against a brute-force reference, refusals, multi-token words."""

from __future__ import annotations

import pytest
import torch

import core.search.null as null_mod
from core.analysis import Analysis, analysis_from_weights
from core.errors import SpecError
from core.model.random import random_weights
from core.model.weights import process
from core.search.engine import SearchIndex, build_index, search
from core.search.null import ALPHA, Null, null_for, random_queries, word_pool
from core.settings import Settings
from tests.core.reference import unembed_as_read
from tests.tiny_models import make_tokenizer

KINDS = ("ov", "mlp_in", "mlp_out")


def _indicator(tok, pieces: list[str], d_vocab: int) -> torch.Tensor:
    t = torch.zeros(d_vocab)
    for p in pieces:
        for i in tok.encode(p, add_special_tokens=False):
            t[i] = 1.0
    return t


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(1000)


@pytest.fixture(scope="module")
def planted(tokenizer, tmp_path_factory) -> tuple[Analysis, SearchIndex]:
    """A random model with a fire/flames direction in one head's W_O, a direction writing
    every piece of "mountain" in one MLP, and one writing only its first piece in another.
    """
    raw = random_weights(2, 4, 64, 256, len(tokenizer), seed=3)
    V = raw.meta.d_vocab
    pinv = torch.linalg.pinv(process(raw, "post").W_U)
    fire = _indicator(tokenizer, [" fire", " flames"], V) @ pinv
    whole = _indicator(tokenizer, ["mountain"], V) @ pinv
    first = _indicator(tokenizer, ["m"], V) @ pinv
    W_O, W_out = raw.W_O.clone(), raw.W_out.clone()
    W_O[1, 2, 0] = 40 * fire / fire.norm()
    W_out[0, 7] = 40 * whole / whole.norm()
    W_out[1, 9] = 40 * first / first.norm()
    a = analysis_from_weights(
        raw.replace(W_O=W_O, W_out=W_out),
        tokenizer,
        Settings(
            model="planted", cache_dir=tmp_path_factory.mktemp("c"), kinds=KINDS, device="cpu"
        ),
    )
    return a, build_index(a, tokenizer=tokenizer)


@pytest.fixture
def draws(monkeypatch) -> int:
    monkeypatch.setattr(null_mod, "N_DRAWS", 200)
    return 200


def test_planted_concept_is_significant_and_a_random_query_is_not(planted, draws) -> None:
    _, index = planted
    res = search(index, "fire, flames", top=5)
    best = res.hits[0]
    assert (best.matrix, best.layer, best.head, best.index) == ("ov", 1, 2, 0)
    assert best.significant and best.p is not None and best.p <= ALPHA
    assert best.z is not None and best.z > 1  # the token score is capped at 0: p decides
    assert res.null is not None and len(res.null.best) == draws
    # Random two-word queries drawn apart from the null's own draws (another seed), with
    # neither planted word: their best hit anywhere is significant only at about the
    # nominal rate ALPHA (a family-wise p), and typically far from it.
    raw = index.tokens.raw
    queries = random_queries(raw, index.tokenizer, index.embedder.d_vocab, 2, 40, seed=99)
    ps = []
    for q in queries:
        if {"fire", "flames"} & set(q.concepts):
            continue
        (hit,) = search(index, q.text, top=1).hits
        assert hit.p is not None and hit.significant == (hit.p <= ALPHA)
        ps.append(hit.p)
    assert len(ps) >= 18
    assert sum(p <= ALPHA for p in ps) <= 4  # nominally ALPHA of them: about 2
    assert sorted(ps)[len(ps) // 2] > 0.2


def test_null_p_and_z_match_a_brute_force_reference(planted) -> None:
    a, index = planted
    n = 40
    nul = null_for(index, 2, "pinv", KINDS, 0.0, draws=n)
    # Brute force: the same random queries, each embedded as t @ pinv(W_U) densely, and
    # its best |cosine| over every direction of every kind, all in float64.
    W_U = unembed_as_read(a.weights.W_U, a.settings.projection)  # as search reads
    pinv = torch.linalg.pinv(W_U, rtol=1e-5)  # [V, d]
    dirs = torch.cat(
        [
            a.svd.kinds[k].decomposition.directions.permute(0, 2, 1).reshape(-1, W_U.shape[0])
            for k in KINDS
        ]
    ).double()
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    queries = random_queries(
        index.tokens.raw,
        index.tokenizer,
        index.embedder.d_vocab,
        2,
        n,
        null_mod.SEED,
        index.tokens.trained,
    )
    bests = []
    for q in queries:
        t = torch.zeros(W_U.shape[1], dtype=torch.float64)
        t.index_add_(0, q.ids, q.weights.double())
        v = t @ pinv
        bests.append(float((dirs @ (v / v.norm())).abs().max()))
    ref = torch.tensor(sorted(bests), dtype=torch.float64)
    torch.testing.assert_close(nul.best.double(), ref, atol=2e-4, rtol=0)
    for s in (float(ref[n // 2]), float(ref[-3]) + 1e-3, float(ref[-1]) + 0.01, 0.0):
        p_ref = (1 + sum(b >= s for b in bests)) / (n + 1)
        z_ref = (s - sum(bests) / n) / float(torch.tensor(bests).std())
        # Scores within rounding of a null value may count either way.
        if min(abs(b - s) for b in bests) > 1e-3:
            assert nul.p(s) == pytest.approx(p_ref)
        assert nul.z(s) == pytest.approx(z_ref, rel=1e-3, abs=1e-3)


def test_cut_agrees_with_p() -> None:
    best = torch.linspace(-3.0, 0.0, 100)
    nul = Null("token", 2, 0.0, ("ov",), best)
    for s in torch.linspace(-3.5, 0.5, 400).tolist():
        assert (s > nul.cut) == (nul.p(s) <= ALPHA)


def test_significant_only_keeps_exactly_the_significant_hits(planted) -> None:
    _, index = planted
    every = search(index, "fire, flames", top=50)
    kept = search(index, "fire, flames", top=50, significant_only=True)
    assert [h.index for h in kept.hits] == [h.index for h in every.hits if h.significant]
    assert any(not h.significant for h in every.hits)


def test_null_is_saved_in_the_cache_and_read_back(planted) -> None:
    a, index = planted
    first = null_for(index, 3, "ridge", KINDS, 0.0, draws=10)
    fresh = build_index(a, tokenizer=index.tokenizer)  # a new index: empty memo, same cache entry
    assert not fresh.nulls
    assert fresh.store is not None and fresh.store.load(
        "searchnull-ridge-3-ov-mlp_in-mlp_out-t0",
        {"draws": 10, "seed": null_mod.SEED, "min_letters": 3, "threshold": 0.0},
    )
    again = null_for(fresh, 3, "ridge", KINDS, 0.0, draws=10)
    torch.testing.assert_close(again.best, first.best)


def test_nonsense_query_is_refused(planted) -> None:
    _, index = planted
    with pytest.raises(SpecError, match=r"^'qqqzzzxxyy' is not a known word") as exc:
        search(index, "qqqzzzxxyy")
    assert "\n" not in str(exc.value)


def test_multi_token_word_is_matched_whole(planted, tokenizer) -> None:
    """ "mountain" is several tokens here: the direction writing all of them ranks above
    the one writing only its first piece (which matching the first piece alone prefers).
    """
    _, index = planted
    assert len(tokenizer.encode("mountain")) > 1
    res = search(index, "mountain", top=5)
    found = [(h.matrix, h.layer, h.index) for h in res.hits]
    # The planted rows are each layer's strongest W_out direction (index 0).
    assert found[0] == ("mlp_out", 0, 0)
    assert ("mlp_out", 1, 0) in found[1:]
    assert all(len(sp) > 1 for sp in res.query.spellings[0])
    assert "".join(res.query.spellings[0][0]).strip() == "mountain"


def test_word_pool_is_whole_words() -> None:
    raw = [" fire", "fl", " ab", " water", "ames", " 123", *[f" w{'a' * i}" for i in range(30)]]
    pool = word_pool(raw)
    assert 0 in pool and 3 in pool and all(raw[i].startswith(" ") for i in pool)
    assert not {1, 2, 4, 5} & set(pool)


def test_random_queries_have_the_shape(planted) -> None:
    _, index = planted
    qs = random_queries(index.tokens.raw, index.tokenizer, index.embedder.d_vocab, 3, 5)
    assert all(len(q.concepts) == 3 for q in qs)
    assert (
        qs[0].text
        == random_queries(index.tokens.raw, index.tokenizer, index.embedder.d_vocab, 3, 5)[0].text
    )


def _reference_bin(word: str) -> int:
    """A word's frequency bin from ``wordfreq``'s own Zipf function (a path apart from
    the code's frequency table) and the documented edges."""
    wordfreq = pytest.importorskip("wordfreq")
    z = wordfreq.zipf_frequency(word.strip().lower(), "en")
    return sum(z >= e for e in null_mod.ZIPF_EDGES)


def test_random_concepts_are_as_frequent_as_the_querys(planted, monkeypatch) -> None:
    """Each random concept is drawn from its query concept's frequency bin (every bin
    the tiny vocabulary fills is drawn from, however few words it holds)."""
    _, index = planted
    monkeypatch.setattr(null_mod, "MIN_BIN", 1)
    raw = index.tokens.raw
    pool = word_pool(raw, index.tokens.trained)
    filled = sorted({_reference_bin(raw[i]) for i in pool})
    assert len(filled) >= 3  # rare, middling and common English words
    for b in filled:
        qs = random_queries(raw, index.tokenizer, index.embedder.d_vocab, 2, 6, bins=(b, b))
        for q in qs:
            assert len(q.concepts) == 2 and len(set(q.concepts)) == 2
            for c in q.concepts:
                # wordfreq rounds Zipf to 2 decimals: a word on an edge may sit either side.
                assert _reference_bin(c) == b or any(
                    abs(pytest.importorskip("wordfreq").zipf_frequency(c, "en") - e) < 0.011
                    for e in null_mod.ZIPF_EDGES
                ), (c, b)


def test_words_by_bin_groups_the_pool_by_frequency(planted) -> None:
    _, index = planted
    raw = index.tokens.raw
    pool = word_pool(raw, index.tokens.trained)
    groups = null_mod.words_by_bin(raw, pool)
    assert sorted(i for ids in groups.values() for i in ids) == sorted(pool)
    wordfreq = pytest.importorskip("wordfreq")
    for b, ids in groups.items():
        for i in ids:
            z = wordfreq.zipf_frequency(raw[i].strip().lower(), "en")
            on_edge = any(abs(z - e) < 0.011 for e in null_mod.ZIPF_EDGES)
            assert _reference_bin(raw[i]) == b or on_edge, (raw[i], b)


def test_a_thin_bin_draws_from_the_whole_pool(planted, monkeypatch) -> None:
    _, index = planted
    monkeypatch.setattr(null_mod, "MIN_BIN", 10**9)
    raw = index.tokens.raw
    pool = {raw[i].strip() for i in word_pool(raw, index.tokens.trained)}
    qs = random_queries(raw, index.tokenizer, index.embedder.d_vocab, 1, 30, bins=(4,))
    drawn = {q.concepts[0] for q in qs}
    assert drawn <= pool and len({_reference_bin(c) for c in drawn}) > 1


def test_a_search_is_judged_against_its_concepts_frequency(planted) -> None:
    """The null of a search is drawn in the query concepts' bins, kept apart from the
    null of another frequency, and stored under its own part."""
    a, index = planted
    res = search(index, "the, fire", top=3)
    want = tuple(sorted((_reference_bin("the"), _reference_bin("fire"))))
    assert res.null is not None and res.null.bins == want and res.null.n_concepts == 2
    other = null_for(index, 2, "token", res.null.kinds, 0.0, bins=(0, 0))
    assert other is not None and other.bins == (0, 0)
    assert not torch.equal(other.best, res.null.best)
    fresh = build_index(a, tokenizer=index.tokenizer)
    again = null_for(fresh, 2, "token", res.null.kinds, 0.0, bins=want[::-1])
    assert again is not None and torch.equal(again.best, res.null.best)


@pytest.mark.parametrize("method", ["token", "pinv"])
@pytest.mark.parametrize("prefilter", [None, 50])
@pytest.mark.parametrize("cut", [False, True])
def test_batched_best_scores_equal_one_ranking_per_query(
    planted, monkeypatch, method, prefilter, cut
) -> None:
    """The null's batched pass gives each random query the best score ``rank(top=1)``
    gives it alone (``-inf`` where no direction passes the threshold: with ``cut``, the
    median of the queries' best |cosine|); ``prefilter`` makes the ``token`` method keep
    50 of the 384 directions first. More queries than one batch holds, so the batches'
    seams are crossed; the prefilter's survivors are scored from the batch's product."""
    import math

    import core.search.ranking as ranking

    _, index = planted
    if prefilter is not None:
        monkeypatch.setattr(ranking, "PREFILTER", prefilter)
    monkeypatch.setattr(ranking, "BATCH_ENTRIES", 10 * 384)  # a few queries per batch
    qs = random_queries(index.tokens.raw, index.tokenizer, index.embedder.d_vocab, 2, 20)
    threshold = 0.0
    if cut:
        cos = [float(ranking.rank(index, q, "pinv", KINDS, 0.0, top=1)[0].score[0]) for q in qs]
        threshold = float(torch.tensor(cos).median())
    got = ranking.best_scores(index, qs, method, KINDS, threshold)
    ref = []
    for q in qs:
        sc, _ = ranking.rank(index, q, method, KINDS, threshold, top=1)
        ref.append(float(sc.score[0]) if len(sc.rows) else -math.inf)
    assert torch.equal(got, torch.tensor(ref))
    if cut and method == "pinv":
        assert math.isinf(min(ref)) and max(ref) > -math.inf  # both cases met


def test_a_shared_draw_pool_draws_the_same_queries(planted) -> None:
    """A null drawn from the index's memoised pool is the null drawn from scratch: the
    pool is the whole-word tokens grouped by frequency bin, and the queries match."""
    import dataclasses

    _, index = planted
    raw, trained = index.tokens.raw, index.tokens.trained
    pool = null_mod.draw_pool(raw, trained)
    assert pool.ids == word_pool(raw, trained)
    assert pool.by_bin is not None
    assert pool.by_bin == null_mod.words_by_bin(raw, pool.ids)
    assert sorted(i for ids in pool.by_bin.values() for i in ids) == sorted(pool.ids)
    for bins in (None, (1, 3)):
        n = 1 if bins is None else 2
        fresh = random_queries(raw, index.tokenizer, index.embedder.d_vocab, n, 8, 5, trained, bins)
        shared = random_queries(
            raw, index.tokenizer, index.embedder.d_vocab, n, 8, 5, trained, bins, pool
        )
        assert [q.text for q in fresh] == [q.text for q in shared]
    # null_for fills the memo once and gives the same null as an index without it.
    a = dataclasses.replace(index, store=None, nulls={}, memo={})
    b = dataclasses.replace(index, store=None, nulls={}, memo={})
    na = null_for(a, 2, "token", a.kinds, 0.0, draws=20, bins=(1, 3))
    assert "pool" in a.memo
    b.memo["pool"] = null_mod.DrawPool(word_pool(raw, trained), None)  # bins from scratch
    nb = null_for(b, 2, "token", b.kinds, 0.0, draws=20, bins=(1, 3))
    assert na is not None and nb is not None and torch.equal(na.best, nb.best)
