"""The self-retrieval benchmark: sanity against theory, floors, and token beats pinv."""

from __future__ import annotations

import math

import pytest
import torch

from core.analysis import analysis_from_weights
from core.model.random import SyntheticTokenizer, number_tokenizer, random_weights
from core.search.embed import METHODS
from core.search.engine import build_index, search
from core.search.retrieval import self_retrieval, source_tokens
from core.settings import Settings

SHAPE = (2, 4, 64, 256, 2048)  # layers, heads, d_model, d_mlp, vocab: 384 directions
KINDS = ("ov", "mlp_in", "mlp_out")


def _index(tmp_path, tokenizer=None, **kw):
    raw = random_weights(*SHAPE, seed=0, **kw)
    settings = Settings(model="bench", cache_dir=tmp_path, kinds=KINDS, device="cpu")
    tok = number_tokenizer(SHAPE[-1]) if tokenizer is None else tokenizer
    a = analysis_from_weights(raw, tok, settings, use_cache=False)
    return build_index(a)


@pytest.fixture(scope="module")
def isotropic(tmp_path_factory):
    return _index(tmp_path_factory.mktemp("iso"))


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    return _index(tmp_path_factory.mktemp("tl"), clusters=32, decay=1.5)


def _by_method(scores):
    return {s.method: s for s in scores}


def test_source_tokens_are_the_cached_top_tokens(isotropic):
    rows = torch.tensor([0, 5, 300])
    ids = source_tokens(isotropic, rows, 7)
    d = isotropic.results["ov"].decomposition
    v = d.directions[0, :, 0]
    dense = (v @ isotropic.embedder.W_U).topk(7).indices
    assert ids[0].tolist() == dense.tolist()
    assert ids.shape == (3, 7)


def test_isotropic_pinv_cosine_matches_theory(isotropic):
    # With an isotropic W_U, the mean of k selected unembeddings is z * v plus noise of
    # norm sqrt((d - 1) / k): the cosine is about z / sqrt(z^2 + (d - 1) / k), where z is
    # the mean of the top k of d_vocab standard normals (~2.9 for 10 of 2048).
    k, d = 10, SHAPE[2]
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, SHAPE[-1], generator=g).topk(k, dim=1).values.mean().item()
    theory = z / math.sqrt(z * z + (d - 1) / k)
    s = _by_method(self_retrieval(isotropic, ("pinv",), k=k))["pinv"]
    assert s.mean_cosine == pytest.approx(theory, abs=0.05)
    assert s.n_sources == s.n_searched == 384


def test_floors_and_token_beats_pinv_on_a_trained_like_unembedding(trained_like):
    for k, floor in [(3, 0.75), (10, 0.9)]:
        s = _by_method(self_retrieval(trained_like, k=k))
        assert s["token"].recall_1 >= floor
        assert s["token"].recall_10 >= 0.95
        # pinv amplifies the query's noise along W_U's weak directions.
        assert s["token"].recall_1 >= s["pinv"].recall_1 + 0.3
        assert s["ridge"].recall_1 >= s["pinv"].recall_1 + 0.1
        assert s["ridge"].mean_cosine >= s["pinv"].mean_cosine + 0.1
        assert s["token"].mean_cosine == pytest.approx(s["ridge"].mean_cosine)


def test_token_is_not_worse_on_an_isotropic_unembedding(isotropic):
    for k in (1, 10):
        s = _by_method(self_retrieval(isotropic, k=k))
        assert s["token"].recall_1 >= s["pinv"].recall_1 - 0.01
        assert s["pinv"].recall_10 >= 0.95 if k == 10 else True


def test_sampling_is_seeded_and_bounded(isotropic):
    a = self_retrieval(isotropic, ("ridge",), k=5, sample=50, seed=3)[0]
    b = self_retrieval(isotropic, ("ridge",), k=5, sample=50, seed=3)[0]
    assert a == b and a.n_sources == 50 and a.n_searched == 384
    assert set(a.to_json()) >= {"method", "k", "mean_cosine", "recall@1", "recall@10"}


@pytest.fixture(scope="module")
def one_name_per_token(tmp_path_factory):
    # Each token's text names that token alone (no spaced twin), so typing a source's
    # top tokens into search asks exactly the benchmark's query.
    tok = SyntheticTokenizer([f"t{i}" for i in range(SHAPE[-1])])
    return _index(tmp_path_factory.mktemp("one"), tokenizer=tok, clusters=32, decay=1.5)


@pytest.mark.parametrize("method", METHODS)
def test_benchmark_figures_are_what_search_returns(one_name_per_token, method):
    index, k = one_name_per_token, 5
    rows = index.rows_for(index.kinds)
    g = torch.Generator().manual_seed(7)
    sources = rows[torch.randperm(len(rows), generator=g)[:40]]
    ids = source_tokens(index, sources, k)
    r1 = r10 = 0
    for src, toks in zip(sources.tolist(), ids.tolist()):
        query = ", ".join(index.tokens.raw[t] for t in toks)
        hits = search(
            index, query, method, threshold=0.0, top=10, kinds=index.kinds, significance=False
        )
        where = [
            j
            for j, h in enumerate(hits.hits)
            if (h.matrix, h.layer, h.index) == _address(index, src)
            and h.sign == "positive"
            and (h.head is None or h.head == int(index.head[src]))
        ]
        r1 += bool(where) and where[0] == 0
        r10 += bool(where)
    (s,) = self_retrieval(index, (method,), k=k, kinds=index.kinds, sources=sources)
    assert s.n_sources == len(sources)
    assert s.recall_1 == r1 / len(sources)
    assert s.recall_10 == r10 / len(sources)
    # Not vacuous: some sources are found (pinv finds few on this unembedding).
    assert r10 > 0


def _address(index, row):
    kind = index.kinds[int(index.kind_of[row])]
    return kind, int(index.layer[row]), int(index.index[row])
