"""The rows each method decomposes, their weights, the random control, and the error measure.

Rows live in the residual stream (``d_model`` columns): the embedding's rows are tokens,
MLP out's rows are the neurons' write vectors (``W_out[layer]``), MLP in's the neurons'
read vectors (``W_in[layer]^T``), and ``ov`` stacks the write vectors of every head of a
layer (``W_O[layer]``, ``n_heads * d_head`` rows).

The error measure is the fraction of (weighted) squared norm unexplained,
``FVU = sum_i w_i |x_i - x̂_i|^2 / sum_i w_i |x_i|^2`` (rows are not centred: the SVD
views decompose the uncentred matrices too).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from core.model.weights import ModelWeights


def matrix_rows(weights: ModelWeights, matrix: str, layer: int) -> Float[Tensor, "n d_model"]:
    """The rows of ``matrix`` at ``layer`` as float32 ``[n, d_model]`` (module docstring).

    Raises:
        KeyError: an unknown matrix.
    """
    if matrix == "embed":
        X = weights.W_E
    elif matrix == "mlp_out":
        X = weights.W_out[layer]
    elif matrix == "mlp_in":
        X = weights.W_in[layer].T
    elif matrix == "ov":
        X = weights.W_O[layer].flatten(0, 1)
    else:
        raise KeyError(matrix)
    return X.detach().float().contiguous()


def reference_texts(model_dir: Path | None) -> list[Path]:
    """The checkpoint's reference text files (``<model_dir>/heldout/*.txt``), if any."""
    if model_dir is None:
        return []
    folder = Path(model_dir) / "heldout"
    return sorted(folder.glob("*.txt")) if folder.is_dir() else []


def token_frequencies(tokenizer: Any, texts: Sequence[Path], d_vocab: int) -> Float[Tensor, " v"]:
    """Row weights of the embedding: each token's count in ``texts`` plus one (so no
    token drops out), normalised to sum to one; uniform when there is no text.
    """
    counts = torch.ones(d_vocab, dtype=torch.float64)
    for path in texts:
        ids = tokenizer.encode(path.read_text(encoding="utf-8", errors="replace"))
        ids = torch.tensor([i for i in ids if 0 <= i < d_vocab], dtype=torch.long)
        counts.index_add_(0, ids, torch.ones(len(ids), dtype=torch.float64))
    return (counts / counts.sum()).float()


def uniform(n: int) -> Float[Tensor, " n"]:
    """Equal weights summing to one."""
    return torch.full((n,), 1.0 / n)


def sample_rows(w: Float[Tensor, " n"], max_rows: int, seed: int) -> torch.Tensor:
    """Indices of the rows a fit sees: all when there are at most ``max_rows``, else a
    sample of ``max_rows`` without replacement, drawn with probability ``w`` (seeded).
    """
    n = w.shape[0]
    if n <= max_rows:
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed)
    return torch.multinomial(w.double(), max_rows, replacement=False, generator=g).sort().values


def gaussian_like(X: Float[Tensor, "n d"], seed: int) -> Float[Tensor, "n d"]:
    """The random control: i.i.d. normal entries with ``X``'s shape and standard deviation."""
    g = torch.Generator().manual_seed(seed + 7)
    return torch.randn(X.shape, generator=g) * X.std()


def fvu(
    X: Float[Tensor, "n d"], X_hat: Float[Tensor, "n d"], w: Float[Tensor, " n"] | None = None
) -> float:
    """The fraction of weighted squared norm ``X_hat`` leaves unexplained (module docstring)."""
    w = uniform(X.shape[0]) if w is None else w
    err = ((X - X_hat).double() ** 2).sum(1)
    tot = (X.double() ** 2).sum(1)
    return float((w.double() * err).sum() / (w.double() * tot).sum().clamp_min(1e-300))


def svd_fvu_curve(X: Float[Tensor, "n d"], w: Float[Tensor, " n"] | None = None) -> list[float]:
    """FVU of the best rank-``r`` approximation under the weighted norm, for
    ``r = 0 .. min(n, d)`` (from the singular values of ``diag(sqrt(w)) X``).
    """
    w = uniform(X.shape[0]) if w is None else w
    S = torch.linalg.svdvals(X.double() * w.double().sqrt()[:, None])
    e = S**2
    tail = e.flip(0).cumsum(0).flip(0)  # tail[r] = sum_{i >= r} s_i^2
    total = float(e.sum())
    return [float(tail[r]) / total if r < len(e) else 0.0 for r in range(len(e) + 1)]


def equal_parameter_rank(n: int, d: int, atoms: int, nnz: int) -> int:
    """The SVD rank with as many parameters as a dictionary of ``atoms`` unit atoms with
    ``nnz`` coefficients per row: ``(atoms * d + n * nnz) / (n + d)`` (rounded, at most
    ``min(n, d)``; code indices are not counted).
    """
    return max(1, min(n, d, round((atoms * d + n * nnz) / (n + d))))


def order_and_sign(
    dirs: Float[Tensor, "c d"],
    energy: Float[Tensor, " c"],
    W_U: Float[Tensor, "d v"],
    token_weights: Float[Tensor, "c v"] | None = None,
) -> tuple[Float[Tensor, "c d"], Float[Tensor, " c"], Float[Tensor, "c v"] | None]:
    """Unit directions sorted by ``energy`` (descending, returned as shares of its sum)
    and signed by the SVD views' token rule (:func:`core.svd.project.token_signs`: the
    largest-magnitude token projection is positive). With ``token_weights`` (NMF), those
    are sorted alike and the sign follows them instead.
    """
    from core.svd.project import token_signs

    order = energy.argsort(descending=True)
    dirs = dirs[order]
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-12)
    share = energy[order] / energy.sum().clamp_min(1e-30)
    if token_weights is not None:
        token_weights = token_weights[order]
        # A component's direction leans the way its token weights do.
        proj = dirs @ W_U.float()
        flip = (proj * token_weights).sum(1) < 0
    else:
        flip, _ = token_signs(dirs, W_U, 1)
    dirs = torch.where(flip[:, None], -dirs, dirs)
    return dirs.contiguous(), share.float(), token_weights
