"""NMF of a matrix's token-space image, split into what it promotes and suppresses.

For MLP out the image is the neurons' logit contributions ``A = W_out[layer] W_U``
(``[d_mlp, d_vocab]``; for ``ov`` the heads' write vectors ``W_O[layer] W_U``). NMF takes
the non-negative ``[relu(A), relu(-A)]`` (``[n, 2 d_vocab]``) to ``W H`` with ``W, H >= 0``
(scikit-learn's ``NMF``): each component is a parts-based "topic" with promoted token
weights ``H[:, :V]`` and suppressed ones ``H[:, V:]``. Its token weights are
``H[:, :V] - H[:, V:]`` (its top and bottom tokens), its residual direction the
neurons' write vectors weighted by their loadings ``W[:, c]``, and its strength its
share of ``|W H|^2`` (``|W_c|^2 |H_c|^2`` summed cross terms left out).
"""

from __future__ import annotations

import warnings

import torch
from jaxtyping import Float
from torch import Tensor

from core.decompose.options import Components, DecomposeOptions
from core.decompose.rows import gaussian_like, order_and_sign
from core.progress import Progress, quiet


def split_image(X: Float[Tensor, "n d"], W_U: Float[Tensor, "d v"]) -> Float[Tensor, "n two_v"]:
    """``[relu(X W_U), relu(-X W_U)]``: the token-space image's positive and negative parts."""
    A = X.float() @ W_U.float()
    return torch.cat([A.clamp_min(0), (-A).clamp_min(0)], dim=1)


def nmf_factors(
    P: Float[Tensor, "n m"], n_components: int, n_iter: int, seed: int
) -> tuple[Float[Tensor, "n c"], Float[Tensor, "c m"], float]:
    """``P ≈ W H`` with non-negative factors (scikit-learn, NNDSVDa start, coordinate
    descent); returns ``W``, ``H`` and the FVU ``|P - W H|^2 / |P|^2``.
    """
    from sklearn.decomposition import NMF

    model = NMF(n_components, init="nndsvda", solver="cd", max_iter=n_iter, random_state=seed)
    Pn = P.double().numpy()
    with warnings.catch_warnings():  # a capped iteration count is a setting, not a fault
        warnings.simplefilter("ignore")
        Wn = model.fit_transform(Pn)
    W = torch.from_numpy(Wn).float()
    H = torch.from_numpy(model.components_).float()
    err = float(((P.double() - W.double() @ H.double()) ** 2).sum() / (P.double() ** 2).sum())
    return W, H, err


def nmf(
    X: Float[Tensor, "n d"],
    W_U: Float[Tensor, "d v"],
    options: DecomposeOptions,
    matrix: str,
    layer: int,
    control: bool = False,
    progress: Progress = quiet,
) -> Components:
    """NMF components of ``X``'s token-space image (module docstring); with ``control``,
    of a random Gaussian ``X`` of the same shape and scale through the real ``W_U``.
    """
    if control:
        X = gaussian_like(X, options.seed)
    n, d = X.shape
    V = W_U.shape[1]
    c = min(options.components_for(d), n)
    progress(0.0, f"NMF of {n} x {2 * V} token image, {c} components")
    W, H, err = nmf_factors(split_image(X, W_U), c, options.iterations(), options.seed)
    tokens = H[:, :V] - H[:, V:]
    dirs = W.T @ X.float()  # [c, d]
    energy = (W**2).sum(0) * (H**2).sum(1)
    dirs, share, ordered = order_and_sign(dirs, energy, W_U, tokens)
    progress(1.0, "NMF done")
    return Components("nmf", matrix, layer, dirs, share, ordered, err, n, n, control)
