"""Token filters against plain references: the norm filter (largest unembedding norms
dropped), the frequent filter (wordfreq), their intersection with the others, and the
query path that projects onto the kept tokens only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config

from core.analysis import analysis_from_weights
from core.model.random import SyntheticTokenizer, random_model
from core.query import directions
from core.settings import Settings
from core.svd.tokens import (
    NORM_DROP_PERCENT,
    TOKEN_FILTERS,
    norm_mask,
    parse_filter,
    token_table,
    token_table_from_strings,
)

TOKENS = [" the", " fire", " king", "strugg", "MetaInfo", "ChannelType", "\n", ",", " Paris", "ing"]


@pytest.mark.parametrize("percent", [2.0, 10.0, 35.0, 99.0])
def test_norm_mask_drops_the_largest_norms(percent: float) -> None:
    g = torch.Generator().manual_seed(0)
    norm = torch.rand(1000, generator=g)
    got = norm_mask(norm, percent)
    drop = int(math.floor(percent / 100 * 1000))
    ref = np.ones(1000, dtype=bool)
    ref[np.argsort(-norm.numpy(), kind="stable")[:drop]] = False
    assert got.numpy().tolist() == ref.tolist()
    assert int((~got).sum()) == drop


def test_norm_mask_ties_drop_lower_ids_first() -> None:
    norm = torch.tensor([1.0, 5.0, 5.0, 2.0, 5.0])
    assert norm_mask(norm, 40).tolist() == [True, False, False, True, True]


def test_frequent_mask_matches_wordfreq() -> None:
    wordfreq = pytest.importorskip("wordfreq")
    t = token_table_from_strings(TOKENS, TOKENS)
    got = t.filter_mask("frequent").tolist()
    # A plain reference through wordfreq's own Zipf function (these words sit far from
    # the cut of 3, where its two-decimal rounding could matter).
    ref = [wordfreq.zipf_frequency(x.strip().lower(), "en") >= 3.0 for x in TOKENS]
    assert got == ref
    assert got[:3] == [True, True, True] and not any(got[3:6])


def test_mask_intersects_filters_and_memoises() -> None:
    norm = torch.tensor([3.0, 1.0, 1.5, 9.0, 8.0, 7.0, 0.1, 0.2, 2.0, 0.5])
    trained = torch.tensor([True] * 9 + [False])
    t = token_table_from_strings(TOKENS, TOKENS, trained, norm)
    alpha = np.array([x.strip().isalpha() and not x.startswith("\n") for x in TOKENS])
    high = np.zeros(10, dtype=bool)
    high[np.argsort(-norm.numpy())[:3]] = True  # norm:30 drops three of ten
    ref = alpha & ~high & trained.numpy()
    got = t.mask(("alpha", "norm:30", "trained"))
    assert got is not None and got.numpy().tolist() == ref.tolist()
    assert t.filter_mask("norm:30") is t.filter_mask("norm:30")
    # Without norms the norm filter keeps everything, like trained without a reference.
    bare = token_table_from_strings(TOKENS, TOKENS)
    assert bool(bare.filter_mask("norm").all()) and bool(bare.filter_mask("trained").all())


@pytest.mark.parametrize("bad", ["nrom", "norm:0", "norm:100", "norm:x", "alpha:3"])
def test_bad_filters_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_filter(bad)
    with pytest.raises(ValueError):
        token_table_from_strings(TOKENS, TOKENS).mask((bad,))


def test_every_filter_name_parses() -> None:
    for name in TOKEN_FILTERS:
        assert parse_filter(name) == (name, None)
    assert parse_filter("norm:2.5") == ("norm", 2.5)


def test_token_table_norms_are_the_column_norms() -> None:
    vocab = [f" t{i}" for i in range(50)]
    W = torch.randn(8, 50)
    W2 = torch.randn(8, 50)
    t = token_table(SyntheticTokenizer(vocab), 50, W, norm_W_U=W2)
    assert t.norm is not None
    assert np.allclose(t.norm.numpy(), np.linalg.norm(W2.numpy(), axis=0), rtol=1e-5)


def test_norm_filter_in_the_grid_query(tmp_path) -> None:
    # Every token shown under the norm filter is outside the top 2% by norm, and the
    # ends equal a dense projection restricted to the kept tokens.
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=500)
    m = random_model(cfg, "filters", seed=1)
    W_U = m.raw.W_U.clone()
    W_U[:, :40] *= torch.linspace(2, 6, 40)  # a spread of large norms
    raw = m.raw.replace(W_U=W_U)
    vocab = [f" t{i}" for i in range(500)]
    s = Settings(device="cpu", k=5, n_project=4, kinds=("mlp_out",), cache_dir=tmp_path)
    a = analysis_from_weights(raw, SyntheticTokenizer(vocab), s, use_cache=False)
    norms = np.linalg.norm(a.weights.W_U.numpy(), axis=0)
    high = set(np.argsort(-norms, kind="stable")[: int(500 * NORM_DROP_PERCENT / 100)].tolist())
    s_raw = s.replace(projection="raw")
    got = directions(a, "mlp_out", 0, None, n=4, k=5, filters=("norm",))
    # Read raw, the high-norm tokens do reach the ends: the filter has work to do.
    b = analysis_from_weights(raw, SyntheticTokenizer(vocab), s_raw, use_cache=False)
    unfiltered = directions(b, "mlp_out", 0, None, n=4, k=5)
    d = a.svd.kinds["mlp_out"].decomposition
    kept = np.array([i not in high for i in range(500)])
    assert any({vocab.index(t) for t, _, _ in y.top} & high for y in unfiltered)
    for i, x in enumerate(got):
        assert not {vocab.index(t) for t, _, _ in x.top + x.bottom} & high
        # The cached (oriented) direction: the filter keeps the unfiltered sign.
        v = d.directions[0, :, i].double().numpy()
        p = v @ a.W_U.double().numpy()
        p[~kept] = np.nan
        order = np.argsort(-np.nan_to_num(p, nan=-np.inf))[:5]
        assert [t for t, _, _ in x.top] == [vocab[j] for j in order]
