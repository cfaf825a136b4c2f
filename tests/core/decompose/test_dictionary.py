"""Sparse dictionaries against a planted overcomplete dictionary and plain references
(scikit-learn's ``orthogonal_mp``, numpy reconstructions and SVDs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.decompose.dictionary import dictionary_curves, learn, omp
from core.decompose.options import DecomposeOptions
from core.decompose.rows import equal_parameter_rank, fvu, svd_fvu_curve

D_MODEL = 24
ATOMS = 4 * D_MODEL
NNZ = 3


def _planted(n: int = 1500, noise: float = 0.01, seed: int = 0):
    g = np.random.default_rng(seed)
    D = g.standard_normal((ATOMS, D_MODEL))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    C = np.zeros((n, ATOMS))
    for i in range(n):
        j = g.choice(ATOMS, NNZ, replace=False)
        C[i, j] = g.choice([-1, 1], NNZ) * g.uniform(0.5, 1.5, NNZ)
    X = C @ D + noise * g.standard_normal((n, D_MODEL))
    return torch.tensor(X, dtype=torch.float32), D


def _np_fvu(X: np.ndarray, X_hat: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.full(len(X), 1 / len(X)) if w is None else w
    return float((w * ((X - X_hat) ** 2).sum(1)).sum() / (w * (X**2).sum(1)).sum())


@pytest.fixture(scope="module")
def planted():
    X, D_true = _planted()
    D = learn(X, ATOMS, NNZ, n_iter=25, seed=0)
    return X, D_true, D


def test_planted_atoms_are_recovered(planted) -> None:
    X, D_true, D = planted
    cos = np.abs(D_true @ D.numpy().T.astype(np.float64)).max(1)
    assert (cos > 0.9).mean() >= 0.8, np.sort(cos)[:20]


def test_planted_dictionary_beats_svd_at_equal_parameters(planted) -> None:
    X, _, D = planted
    codes = omp(D, X, NNZ)
    err = fvu(X, codes.reconstruct(D))
    r = equal_parameter_rank(X.shape[0], D_MODEL, ATOMS, NNZ)
    S = np.linalg.svd(X.numpy().astype(np.float64), compute_uv=False)
    svd_err = float((S[r:] ** 2).sum() / (S**2).sum())
    assert err < 0.05
    assert svd_err > 0.5 > err


def test_reconstruction_figure_matches_numpy(planted) -> None:
    X, _, D = planted
    codes = omp(D, X, NNZ)
    C = np.zeros((X.shape[0], D.shape[0]))
    np.add.at(C, (np.arange(X.shape[0])[:, None], codes.idx.numpy()), codes.coef.numpy())
    Xn, Dn = X.numpy().astype(np.float64), D.numpy().astype(np.float64)
    w = np.random.default_rng(1).uniform(size=X.shape[0])
    w /= w.sum()
    want = _np_fvu(Xn, C @ Dn, w)
    got = fvu(X, codes.reconstruct(D), torch.tensor(w, dtype=torch.float32))
    assert got == pytest.approx(want, rel=1e-4)


def test_omp_matches_scikit_learn() -> None:
    from sklearn.linear_model import orthogonal_mp

    g = np.random.default_rng(3)
    D = g.standard_normal((60, 20))
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = g.standard_normal((40, 20))
    codes = omp(torch.tensor(D, dtype=torch.float32), torch.tensor(X, dtype=torch.float32), 4)
    ref = orthogonal_mp(D.T, X.T, n_nonzero_coefs=4).T  # [40, 60]
    mine = np.zeros_like(ref)
    np.add.at(mine, (np.arange(40)[:, None], codes.idx.numpy()), codes.coef.numpy())
    assert np.allclose(mine, ref, atol=1e-4)


def test_svd_curve_matches_numpy_truncation() -> None:
    g = np.random.default_rng(4)
    X = g.standard_normal((50, 12))
    w = g.uniform(size=50)
    w /= w.sum()
    curve = svd_fvu_curve(torch.tensor(X), torch.tensor(w))
    Xw = X * np.sqrt(w)[:, None]
    U, S, Vt = np.linalg.svd(Xw, full_matrices=False)
    for r in (0, 3, 7, 12):
        # The best weighted rank-r fit: project every row onto the top r right vectors.
        X_hat = X @ Vt[:r].T @ Vt[:r]
        assert curve[r] == pytest.approx(_np_fvu(X, X_hat, w), abs=1e-9)


def test_curves_put_the_planted_matrix_below_its_random_control() -> None:
    X, _ = _planted()
    opts = DecomposeOptions(n_components=ATOMS, nnz=NNZ, n_iter=15)
    pts = dictionary_curves(X, opts, nnz_steps=(1, 3), k_steps=(4,))
    at = {(p.method, p.control, p.axis, p.x): p.fvu for p in pts}
    real, control = at[("dictionary", False, "nnz", 3)], at[("dictionary", True, "nnz", 3)]
    assert real < 0.1
    assert control > 3 * real  # Gaussian rows have no sparse overbasis
    assert at[("dictionary", False, "K", ATOMS)] < at[("svd", False, "K", ATOMS)]
    # More atoms or more non-zeros never help less on the planted matrix.
    assert at[("dictionary", False, "nnz", 1)] > at[("dictionary", False, "nnz", 3)]
