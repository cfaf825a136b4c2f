"""The projections (raw, centred, standardized) against plain numpy references, the
sign rule read through each, and a planted high-norm junk token that the default
projection keeps off the top end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config

from core.analysis import analysis_from_weights
from core.cache.build import build_svd
from core.model.random import SyntheticTokenizer, random_model
from core.model.weights import process
from core.query import directions
from core.settings import DEFAULT_PROJECTION, PROJECTIONS, Settings
from core.svd.project import project_topk, read_unembed, token_signs

D, V = 32, 400


def _numpy_reference(W: np.ndarray, projection: str) -> np.ndarray:
    """Each projection written out column by column in float64."""
    out = np.empty_like(W, dtype=np.float64)
    mu = np.zeros(W.shape[0])
    for t in range(W.shape[1]):
        mu += W[:, t]
    mu /= W.shape[1]
    for t in range(W.shape[1]):
        col = W[:, t].astype(np.float64)
        if projection == "raw":
            out[:, t] = col
        elif projection == "centred":
            out[:, t] = col - mu
        else:
            c = col - mu
            out[:, t] = c / (np.sqrt(c @ c) / np.sqrt(W.shape[0]))
    return out


@pytest.fixture
def unembed() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    # Columns of very different norms, and a shared offset the centring removes.
    W = torch.randn(D, V, generator=g) * torch.rand(V, generator=g) * 3 + 0.5
    return W


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_read_unembed_equals_plain_reference(unembed: torch.Tensor, projection: str) -> None:
    got = read_unembed(unembed, projection)
    ref = _numpy_reference(unembed.numpy(), projection)
    assert got.dtype == torch.float32 and got.shape == unembed.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_standardized_is_a_z_score_against_random_unit_directions(unembed: torch.Tensor) -> None:
    # Empirical check of the definition: over many isotropic random unit directions each
    # token's centred logit, divided by the column scale, has mean 0 and variance 1.
    g = torch.Generator().manual_seed(2)
    v = torch.randn(20000, D, generator=g, dtype=torch.float64)
    v /= v.norm(dim=1, keepdim=True)
    z = v @ read_unembed(unembed, "standardized").double()
    assert z.mean(0).abs().max() < 0.05
    assert (z.std(0) - 1).abs().max() < 0.05
    raw = v @ unembed.double()  # raw logits' spread follows each column's norm instead
    assert raw.std(0).max() / raw.std(0).min() > 5


def test_zero_column_stays_zero() -> None:
    W = torch.randn(D, 10)
    # The mean of the others: then it equals the mean of all ten, and centres to zero.
    W[:, 3] = W[:, [i for i in range(10) if i != 3]].mean(1)
    got = read_unembed(W, "standardized")
    assert torch.isfinite(got).all()
    assert got[:, 3].abs().max() < 1e-3 * got.abs().max()


def test_unknown_projection_is_refused() -> None:
    with pytest.raises(ValueError, match="projection"):
        read_unembed(torch.zeros(2, 2), "cosine")
    # Refused by the runtime type check in tests, by __post_init__ without it.
    with pytest.raises(Exception, match="projection"):
        Settings(projection="cosine")  # type: ignore[arg-type]


@pytest.mark.parametrize("projection", PROJECTIONS)
def test_topk_and_sign_rule_through_each_projection(unembed: torch.Tensor, projection: str) -> None:
    g = torch.Generator().manual_seed(3)
    dirs = torch.randn(9, D, generator=g)
    dirs /= dirs.norm(dim=1, keepdim=True)
    W_R = read_unembed(unembed, projection)
    dense = dirs.double().numpy() @ _numpy_reference(unembed.numpy(), projection)
    t = project_topk(dirs, W_R, 5, chunk=64)
    for i in range(dirs.shape[0]):
        assert set(t.top_idx[i].tolist()) == set(np.argsort(-dense[i])[:5].tolist())
        assert set(t.bottom_idx[i].tolist()) == set(np.argsort(dense[i])[:5].tolist())
    flip, oriented = token_signs(dirs, W_R, 5, chunk=64)
    for i in range(dirs.shape[0]):
        # Flipped exactly when the largest-magnitude value is negative.
        assert bool(flip[i]) == bool(dense[i][np.argmax(np.abs(dense[i]))] < 0)
        assert oriented.top_val[i, 0] > 0


# ----------------------------------------------------------------- planted junk token

JUNK = 17
KINDS = ("ov", "mlp_in", "mlp_out")


@pytest.fixture(scope="module")
def planted():
    """A tiny model whose token ``JUNK`` has a random unembedding column 40x the usual
    norm: a rare token's column blown up, carrying no concept."""
    cfg = GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=600)
    m = random_model(cfg, "planted", seed=4)
    W_U = m.raw.W_U.clone()
    g = torch.Generator().manual_seed(9)
    col = torch.randn(W_U.shape[0], generator=g)
    W_U[:, JUNK] = col / col.norm() * W_U.norm(dim=0).mean() * 40
    raw = m.raw.replace(W_U=W_U)
    tok = SyntheticTokenizer([f" t{i}" for i in range(cfg.vocab_size)])
    return raw, tok


def _junk_share(raw, projection: str, k: int = 5, n: int = 6) -> float:
    s = Settings(device="cpu", k=k, n_project=n, kinds=KINDS, projection=projection)
    res = build_svd(process(raw, "post"), s)
    rows = [r.tops.top_idx[:, :k] for r in res.kinds.values()]
    top = torch.cat(rows)
    return float((top == JUNK).any(dim=1).float().mean())


def test_planted_junk_takes_the_raw_top_end(planted) -> None:
    raw, _ = planted
    # The control that shows the test can fail: raw reading puts the junk token on top.
    assert _junk_share(raw, "raw") > 0.8


def test_default_projection_keeps_planted_junk_off_the_top_end(planted) -> None:
    raw, _ = planted
    # By chance a token is in a direction's top 5 of 600 about 1% of the time.
    assert _junk_share(raw, DEFAULT_PROJECTION) < 0.1


def test_planted_junk_in_the_grid_query(planted, tmp_path) -> None:
    raw, tok = planted
    s = Settings(device="cpu", k=5, n_project=6, kinds=KINDS, cache_dir=tmp_path)
    a = analysis_from_weights(raw, tok, s, use_cache=False)
    b = analysis_from_weights(raw, tok, s.replace(projection="raw"), use_cache=False)
    junk = f" t{JUNK}"

    def share(an) -> float:
        got = [
            any(t == junk for t, _, _ in d.top)
            for layer in range(2)
            for d in directions(an, "mlp_out", layer, None, n=6, k=5)
        ]
        return sum(got) / len(got)

    assert share(b) > 0.8 and share(a) < 0.2
