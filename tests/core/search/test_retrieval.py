"""The self-retrieval benchmark: sanity against theory, floors, and token beats pinv."""

from __future__ import annotations

import math

import pytest
import torch

from core.analysis import analysis_from_weights
from core.search.engine import build_index
from core.search.retrieval import NumberTokenizer, random_weights, self_retrieval, source_tokens
from core.settings import Settings

SHAPE = (2, 4, 64, 256, 2048)  # layers, heads, d_model, d_mlp, vocab: 384 directions
KINDS = ("ov", "mlp_in", "mlp_out")


def _index(tmp_path, **kw):
    raw = random_weights(*SHAPE, seed=0, **kw)
    settings = Settings(model="bench", cache_dir=tmp_path, kinds=KINDS, device="cpu")
    a = analysis_from_weights(raw, NumberTokenizer(SHAPE[-1]), settings, use_cache=False)
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
