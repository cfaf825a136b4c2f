"""FastICA of a matrix's rows: the directions along which the rows are most non-Gaussian.

Rows (tokens of ``W_E``, neurons' read vectors of ``W_in``) are samples in ``d_model``
dimensions. scikit-learn's ``FastICA`` whitens them to ``c`` principal components and
rotates those to maximise non-Gaussianity: ``X ≈ S A^T + mean`` with sources ``S``
``[n, c]`` of unit variance and mixing columns ``A`` ``[d_model, c]``. A component's
direction is its mixing column; its strength ``|A_j|^2`` (its share of the explained
variance). Because ICA rotates inside the principal subspace, its reconstruction error
is the rank-``c`` PCA error; what tells it from a Gaussian matrix is the sources'
excess kurtosis (:attr:`IcaFit.kurtosis`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from core.decompose.options import Components, DecomposeOptions
from core.decompose.rows import fvu, gaussian_like, order_and_sign, sample_rows, uniform
from core.progress import Progress, quiet


@dataclass(frozen=True)
class IcaFit:
    """An unmixing of ``X``'s rows.

    Attributes:
        mixing: ``[d, c]`` columns: the independent directions (unnormalised).
        sources: ``[n, c]`` per-row source values (unit variance).
        mean: ``[d]`` the row mean.
        kurtosis: ``[c]`` excess kurtosis of each source (0 for a Gaussian).
    """

    mixing: Float[Tensor, "d c"]
    sources: Float[Tensor, "n c"]
    mean: Float[Tensor, " d"]
    kurtosis: Float[Tensor, " c"]

    def reconstruct(self) -> Float[Tensor, "n d"]:
        """``S A^T + mean``."""
        return self.sources @ self.mixing.T + self.mean


def fast_ica(X: Float[Tensor, "n d"], n_components: int, n_iter: int, seed: int) -> IcaFit:
    """FastICA (logcosh contrast, unit-variance whitening) of the rows of ``X``."""
    from sklearn.decomposition import FastICA

    c = min(n_components, X.shape[1], X.shape[0])
    model = FastICA(c, whiten="unit-variance", max_iter=n_iter, random_state=seed, tol=1e-4)
    with warnings.catch_warnings():  # a capped iteration count is a setting, not a fault
        warnings.simplefilter("ignore")
        S = torch.from_numpy(model.fit_transform(X.double().numpy())).float()
    A = torch.from_numpy(model.mixing_).float()
    mean = torch.from_numpy(model.mean_).float()
    z = (S - S.mean(0)) / S.std(0).clamp_min(1e-12)
    kurt = (z**4).mean(0) - 3.0
    return IcaFit(A, S, mean, kurt)


def ica(
    X: Float[Tensor, "n d"],
    W_U: Float[Tensor, "d v"],
    options: DecomposeOptions,
    matrix: str,
    layer: int,
    w: Float[Tensor, " n"] | None = None,
    control: bool = False,
    progress: Progress = quiet,
) -> tuple[Components, Float[Tensor, " c"]]:
    """ICA components of ``X``'s rows (strongest first) and their sources' excess
    kurtosis in the same order. With ``control``, of a Gaussian ``X``.
    """
    n, d = X.shape
    w = uniform(n) if w is None else w
    if control:
        X = gaussian_like(X, options.seed)
    fit = sample_rows(w, options.max_rows, options.seed)
    progress(0.0, f"FastICA of {len(fit)} rows, {options.components_for(d)} components")
    f = fast_ica(X[fit], options.components_for(d), options.iterations(), options.seed)
    # Sources of every row (the fit may have seen a sample): least squares on the mixing.
    S_all = torch.linalg.lstsq(f.mixing, (X - f.mean).T).solution.T
    err = fvu(X, S_all @ f.mixing.T + f.mean, w)
    energy = (f.mixing**2).sum(0)
    order = energy.argsort(descending=True)
    dirs, share, _ = order_and_sign(f.mixing.T, energy, W_U)
    progress(1.0, "FastICA done")
    comps = Components("ica", matrix, layer, dirs, share, None, err, n, len(fit), control)
    return comps, f.kurtosis[order]
