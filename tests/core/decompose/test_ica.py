"""FastICA unmixes independent non-Gaussian sources mixed linearly."""

from __future__ import annotations

import numpy as np
import torch

from core.decompose.ica import fast_ica, ica
from core.decompose.options import DecomposeOptions


def test_ica_unmixes_independent_sources() -> None:
    g = np.random.default_rng(0)
    n, d = 4000, 6
    S = np.column_stack(
        [g.laplace(size=n), g.uniform(-1, 1, n), g.exponential(size=n) - 1, g.laplace(size=n)]
    )
    A = g.standard_normal((d, 4))
    X = torch.tensor(S @ A.T, dtype=torch.float32)
    f = fast_ica(X, 4, 400, seed=0)
    M = f.mixing.numpy() / np.linalg.norm(f.mixing.numpy(), axis=0)
    An = A / np.linalg.norm(A, axis=0)
    assert (np.abs(An.T @ M).max(1) > 0.98).all()
    # Its reconstruction is the plain product of sources and mixing, plus the mean.
    rec = f.sources.numpy() @ f.mixing.numpy().T + f.mean.numpy()
    assert np.allclose(rec, X.numpy(), atol=1e-3 * float(np.abs(X.numpy()).max()))
    assert (f.kurtosis.abs() > 0.5).all()


def test_components_are_ordered_and_unit() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.distributions.Laplace(0.0, 1.0).sample((500, 5)) * torch.tensor([5, 1, 1, 1, 1.0])
    W_U = torch.randn(5, 30, generator=g)
    c, kurt = ica(X, W_U, DecomposeOptions("ica", n_components=5), "embed", 0)
    assert torch.allclose(c.directions.norm(dim=1), torch.ones(5), atol=1e-5)
    assert (c.strength[:-1] >= c.strength[1:]).all()
    assert abs(float(c.directions[0, 0])) > 0.95  # the loud source first
    assert kurt.shape == (5,)
