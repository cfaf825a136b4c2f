"""Rays against directions, and atoms no SVD direction sees, on constructed cases."""

from __future__ import annotations

import torch

from core.decompose.compare import rays_vs_directions, singular_directions, unseen_atoms


def test_rows_along_singular_directions_beat_the_baseline() -> None:
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=g)).Q.T  # orthonormal rows
    X = basis[torch.randint(4, (200,), generator=g)] * torch.rand(200, 1, generator=g) + 0.5
    stats = rays_vs_directions(X, top=4)
    assert float(stats.rows.median()) > 0.9
    assert float(stats.baseline.median()) < 0.6
    assert stats.summary()["share_above_baseline_q95"] > 0.9


def test_unseen_atoms_are_those_far_from_every_direction() -> None:
    dirs = torch.eye(4, 8)
    atoms = torch.zeros(3, 8)
    atoms[0, 0] = 1.0  # along a direction
    atoms[1, 5] = 1.0  # orthogonal to all four
    atoms[2, :2] = 1.0  # 45 degrees: |cos| 0.707
    u = unseen_atoms(atoms, dirs, threshold=0.5)
    assert u.unseen.tolist() == [1]
    assert torch.allclose(u.best, torch.tensor([1.0, 0.0, 2**-0.5]), atol=1e-6)
    assert u.fraction == 1 / 3


def test_singular_directions_match_numpy() -> None:
    import numpy as np

    X = torch.randn(20, 6, generator=torch.Generator().manual_seed(2))
    V = singular_directions(X).numpy()
    ref = np.linalg.svd(X.numpy().astype(np.float64))[2]
    assert np.allclose(np.abs((V * ref).sum(1)), 1.0, atol=1e-5)
