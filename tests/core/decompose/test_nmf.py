"""NMF against a planted non-negative low-rank matrix and a numpy reconstruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.decompose.nmf import nmf, nmf_factors, split_image
from core.decompose.options import DecomposeOptions


def _planted(n: int = 300, m: int = 200, r: int = 5, seed: int = 0):
    g = np.random.default_rng(seed)
    # Sparse non-negative factors: each row of H is a "topic" of its own columns.
    W = g.exponential(size=(n, r)) * (g.uniform(size=(n, r)) < 0.4)
    H = g.exponential(size=(r, m)) * (g.uniform(size=(r, m)) < 0.3)
    return W, H


def test_nmf_recovers_planted_factors() -> None:
    W0, H0 = _planted()
    P = torch.tensor(W0 @ H0, dtype=torch.float32)
    W, H, err = nmf_factors(P, 5, 500, seed=0)
    Hn = H.numpy() / np.linalg.norm(H.numpy(), axis=1, keepdims=True)
    H0n = H0 / np.linalg.norm(H0, axis=1, keepdims=True)
    assert (np.abs(H0n @ Hn.T).max(1) > 0.95).all()
    # The reported error is the plain numpy one.
    want = ((W0 @ H0 - W.numpy() @ H.numpy()) ** 2).sum() / ((W0 @ H0) ** 2).sum()
    assert err == pytest.approx(want, rel=1e-3, abs=1e-6)
    assert err < 1e-3


def test_split_image_is_the_positive_and_negative_parts() -> None:
    g = torch.Generator().manual_seed(0)
    X, W_U = torch.randn(6, 4, generator=g), torch.randn(4, 9, generator=g)
    P = split_image(X, W_U).numpy()
    A = X.numpy() @ W_U.numpy()
    assert np.allclose(P[:, :9] - P[:, 9:], A, atol=1e-5)
    assert (P >= 0).all()


def test_components_read_promoted_and_suppressed_tokens() -> None:
    # Rows that write along one of two residual directions, each promoting its own tokens.
    g = torch.Generator().manual_seed(1)
    W_U = torch.zeros(4, 8)
    W_U[0, :2], W_U[1, 2:4] = 1.0, 1.0
    W_U[0, 4], W_U[1, 5] = -1.0, -1.0
    X = torch.zeros(40, 4)
    X[:20, 0] = torch.rand(20, generator=g) + 0.5
    X[20:, 1] = 3 * (torch.rand(20, generator=g) + 0.5)
    c = nmf(X, W_U, DecomposeOptions("nmf", n_components=2, n_iter=400), "mlp_out", 0)
    assert c.strength[0] >= c.strength[1]
    assert c.token_weights is not None
    # The stronger component is the second group's: tokens 2, 3 up, token 5 down.
    assert set(c.token_weights[0].topk(2).indices.tolist()) == {2, 3}
    assert int(c.token_weights[0].argmin()) == 5
    assert abs(float(c.directions[0, 1])) > 0.99
