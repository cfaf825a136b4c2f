"""Sparse overcomplete dictionaries ("basis pursuit") of a matrix's rows.

Each row ``x_i`` (``d_model`` wide) is coded as a sum of ``nnz`` atoms of a dictionary of
``K`` unit atoms (``K`` from ``d_model`` to ``16 d_model``): ``x_i ≈ sum_j c_ij D_j``.
Codes come from orthogonal matching pursuit (:func:`omp`, batched in torch; the tests
check it against scikit-learn's ``orthogonal_mp``). The dictionary is learnt by
alternating OMP codes with the least-squares dictionary for those codes (MOD), atoms
no row uses being re-seeded with the worst-reconstructed rows. scikit-learn's
``MiniBatchDictionaryLearning`` (lasso codes) needed minutes for one ``K = 4 d_model``
fit of the demo model's embedding on the 2-core machine we measured; this takes seconds.

Rows are weighted (tokens by frequency, see :mod:`core.decompose.rows`): the fit sees a
sample drawn with those weights, and errors are weighted by them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.decompose.options import Components, DecomposeOptions
from core.decompose.rows import (
    equal_parameter_rank,
    fvu,
    gaussian_like,
    order_and_sign,
    sample_rows,
    svd_fvu_curve,
    uniform,
)
from core.progress import Progress, quiet

#: Rows coded at once (bounds the ``rows x K`` correlation block).
_CHUNK = 4096


@dataclass(frozen=True)
class SparseCodes:
    """``nnz`` (atom, coefficient) pairs per row.

    Attributes:
        idx: atom indices ``[n, nnz]``.
        coef: coefficients ``[n, nnz]`` (least squares on the chosen atoms).
    """

    idx: Int[Tensor, "n s"]
    coef: Float[Tensor, "n s"]

    def __post_init__(self) -> None:
        if self.idx.shape != self.coef.shape:
            raise ValueError("idx and coef must share a shape")

    def reconstruct(self, D: Float[Tensor, "K d"]) -> Float[Tensor, "n d"]:
        """``sum_j coef_ij D[idx_ij]``."""
        return torch.einsum("ns,nsd->nd", self.coef, D[self.idx])

    def energy(self, D: Float[Tensor, "K d"], w: Float[Tensor, " n"]) -> Float[Tensor, " K"]:
        """Each atom's weighted squared norm in the reconstruction, ``sum_i w_i c_ij^2 |D_j|^2``."""
        e = torch.zeros(D.shape[0], dtype=torch.float64)
        e.index_add_(0, self.idx.flatten(), (w[:, None] * self.coef**2).flatten().double())
        return (e * (D.double() ** 2).sum(1)).float()


def omp(D: Float[Tensor, "K d"], X: Float[Tensor, "n d"], nnz: int) -> SparseCodes:
    """Orthogonal matching pursuit of every row of ``X`` on the unit atoms ``D``.

    At each of ``nnz`` steps a row adds the atom most correlated with its residual, then
    its coefficients are the least-squares fit on the atoms chosen so far.
    """
    K = D.shape[0]
    nnz = min(nnz, K, D.shape[1])
    idx_out, coef_out = [], []
    for a in range(0, X.shape[0], _CHUNK):
        Xc = X[a : a + _CHUNK]
        n = Xc.shape[0]
        idx = torch.zeros(n, nnz, dtype=torch.long)
        coef = torch.zeros(n, nnz)
        R = Xc
        for j in range(nnz):
            corr = (R @ D.T).abs()
            if j:
                corr.scatter_(1, idx[:, :j], -1.0)  # an atom is chosen once
            idx[:, j] = corr.argmax(1)
            A = D[idx[:, : j + 1]].double()  # [n, j+1, d]
            G = A @ A.transpose(1, 2)
            G += 1e-10 * torch.eye(j + 1, dtype=G.dtype)
            b = A @ Xc.double()[:, :, None]
            c = torch.linalg.solve(G, b)[:, :, 0]
            coef[:, : j + 1] = c.float()
            R = Xc - torch.einsum("ns,nsd->nd", c, A).float()
        idx_out.append(idx)
        coef_out.append(coef)
    return SparseCodes(torch.cat(idx_out), torch.cat(coef_out))


def learn(
    X: Float[Tensor, "n d"],
    K: int,
    nnz: int,
    n_iter: int,
    seed: int,
    progress: Progress = quiet,
) -> Float[Tensor, "K d"]:
    """A dictionary of ``K`` unit atoms for the rows of ``X`` (OMP codes + MOD updates)."""
    n, d = X.shape
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(n, (K,), generator=g) if n < K else torch.randperm(n, generator=g)[:K]
    D = X[pick] + 0.01 * X.std() * torch.randn(K, d, generator=g)
    D = D / D.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for it in range(n_iter):
        progress(it / n_iter, f"dictionary update {it + 1}/{n_iter}")
        codes = omp(D, X, nnz)
        # MOD: the D minimising |X - C D|^2 for these codes, C^T C D = C^T X, solved by
        # a few conjugate-gradient steps from the current D: C^T C is as sparse as the
        # codes (n nnz^2 entries), where a dense solve costs K^3 (minutes at K = 16 d).
        s = codes.idx.shape[1]
        pair = torch.stack(
            [codes.idx[:, :, None].expand(-1, -1, s), codes.idx[:, None, :].expand(-1, s, -1)]
        ).reshape(2, -1)
        prod = (codes.coef[:, :, None] * codes.coef[:, None, :]).flatten()
        with warnings.catch_warnings():  # torch's notes on sparse invariants and CSR beta
            warnings.simplefilter("ignore", UserWarning)
            A = torch.sparse_coo_tensor(pair, prod, (K, K)).coalesce().to_sparse_csr()
        B = torch.zeros(K, d)
        B.index_add_(
            0, codes.idx.flatten(), (codes.coef[:, :, None] * X[:, None, :]).reshape(-1, d)
        )
        diag = torch.zeros(K).index_add_(0, codes.idx.flatten(), codes.coef.flatten() ** 2)
        used = diag > 0
        ridge = 1e-6 * float(diag[used].mean()) if bool(used.any()) else 1e-12
        D_new = _cg(A, B, D, ridge)
        dead = (~used).nonzero()[:, 0]
        if len(dead):
            # Unused atoms restart at the rows the dictionary explains worst.
            err = ((X - codes.reconstruct(D)) ** 2).sum(1)
            worst = err.topk(min(len(dead), n)).indices
            D_new[dead[: len(worst)]] = X[worst]
        D = D_new / D_new.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return D


def dictionary(
    X: Float[Tensor, "n d"],
    W_U: Float[Tensor, "d v"],
    options: DecomposeOptions,
    matrix: str,
    layer: int,
    w: Float[Tensor, " n"] | None = None,
    control: bool = False,
    progress: Progress = quiet,
) -> tuple[Components, Float[Tensor, "K d"]]:
    """Learn the dictionary of ``X``'s rows; its atoms as :class:`Components` (strongest
    first, token-signed) and the dictionary in atom order ``[K, d]``.

    With ``control`` the fit is to :func:`~core.decompose.rows.gaussian_like` ``X``.
    """
    n, d = X.shape
    w = uniform(n) if w is None else w
    if control:
        X = gaussian_like(X, options.seed)
    K = options.components_for(d, n)
    fit = sample_rows(w, options.max_rows, options.seed)
    D = learn(X[fit], K, options.nnz, options.iterations(), options.seed, progress)
    codes = omp(D, X, options.nnz)
    err = fvu(X, codes.reconstruct(D), w)
    dirs, share, _ = order_and_sign(D, codes.energy(D, w), W_U)
    comps = Components("dictionary", matrix, layer, dirs, share, None, err, n, len(fit), control)
    return comps, D


@dataclass(frozen=True)
class CurvePoint:
    """One point of an error curve.

    Attributes:
        method: ``dictionary``, ``svd`` (truncation), ``nmf``, ``ica``.
        control: fitted to the random Gaussian matrix.
        axis: ``nnz`` (non-zeros per row), ``K`` (atoms), ``rank``, ``components``.
        x: the value on that axis.
        fvu: fraction of squared norm unexplained.
        params: parameters of the approximation (dictionary: ``K d + n nnz``; rank r:
            ``r (n + d)``).
    """

    method: str
    control: bool
    axis: str
    x: int
    fvu: float
    params: int


#: Non-zeros per row on the sparsity curve.
NNZ_STEPS: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
#: Atoms per ``d_model`` on the size curve.
K_STEPS: tuple[int, ...] = (1, 2, 4, 8, 16)


def dictionary_curves(
    X: Float[Tensor, "n d"],
    options: DecomposeOptions,
    w: Float[Tensor, " n"] | None = None,
    nnz_steps: Sequence[int] = NNZ_STEPS,
    k_steps: Sequence[int] = K_STEPS,
    progress: Progress = quiet,
) -> list[CurvePoint]:
    """FVU against non-zeros per row (dictionary of ``options``' size) and against ``K``
    (``k * d_model`` atoms at ``options.nnz``), each beside SVD truncation with the same
    parameters, for ``X`` and for its random Gaussian control (same shape and scale).
    """
    n, d = X.shape
    w = uniform(n) if w is None else w
    out: list[CurvePoint] = []
    jobs = [(False, X), (True, gaussian_like(X, options.seed))]
    K0 = options.components_for(d, n)
    # As many atoms as rows would code each row by itself: those sizes are left out.
    k_steps = [k for k in k_steps if k * d <= n // 2 or k * d == K0]
    total = len(jobs) * (1 + len(k_steps))
    step = 0
    for control, M in jobs:
        svd = svd_fvu_curve(M, w)
        fit = sample_rows(w, options.max_rows, options.seed)
        tag = "control " if control else ""
        D = learn(M[fit], K0, options.nnz, options.iterations(), options.seed,
                  _sub(progress, step, total, tag))  # fmt: skip
        step += 1
        for s in nnz_steps:
            codes = omp(D, M, s)
            p = K0 * d + n * s
            out.append(
                CurvePoint("dictionary", control, "nnz", s, fvu(M, codes.reconstruct(D), w), p)
            )
            r = equal_parameter_rank(n, d, K0, s)
            out.append(CurvePoint("svd", control, "nnz", s, svd[r], r * (n + d)))
        for k in k_steps:
            K = k * d
            if K == K0:
                Dk = D
            else:
                Dk = learn(M[fit], K, options.nnz, options.iterations(), options.seed,
                           _sub(progress, step, total, tag))  # fmt: skip
            step += 1
            codes = omp(Dk, M, options.nnz)
            p = K * d + n * options.nnz
            out.append(
                CurvePoint("dictionary", control, "K", K, fvu(M, codes.reconstruct(Dk), w), p)
            )
            r = equal_parameter_rank(n, d, K, options.nnz)
            out.append(CurvePoint("svd", control, "K", K, svd[r], r * (n + d)))
    progress(1.0, "dictionary curves done")
    return out


def _sub(progress: Progress, step: int, total: int, tag: str) -> Progress:
    """``progress`` for step ``step`` of ``total`` (a fraction of the whole)."""

    def update(frac: float, msg: str) -> None:
        progress((step + frac) / total, tag + msg)

    return update


def _cg(
    A: Tensor, B: Float[Tensor, "K d"], X0: Float[Tensor, "K d"], ridge: float, steps: int = 10
) -> Float[Tensor, "K d"]:
    """Conjugate gradients for ``(A + ridge I) X = B`` (``A`` sparse, symmetric positive
    semi-definite), every column at once, from ``X0``.
    """
    X = X0.clone()
    R = B - (A @ X + ridge * X)
    P = R.clone()
    rs = (R * R).sum(0)
    for _ in range(steps):
        AP = A @ P + ridge * P
        alpha = rs / (P * AP).sum(0).clamp_min(1e-30)
        X += alpha * P
        R -= alpha * AP
        rs_new = (R * R).sum(0)
        if float(rs_new.max()) < 1e-12 * float((B * B).sum(0).max()):
            break
        P = R + (rs_new / rs.clamp_min(1e-30)) * P
        rs = rs_new
    return X
