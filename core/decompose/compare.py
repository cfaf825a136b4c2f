"""Rays against directions: how close rows and atoms come to the SVD's directions.

* Each row (a neuron's write vector, say) gets its largest ``|cos|`` to the top ``r``
  right singular directions of the matrix; the baseline is the same for random unit
  vectors in ``d_model`` dimensions (what a row pointing nowhere in particular gets).
  Rows far above the baseline are "directions" the SVD already has; rows at it are
  "rays" it mixes.
* Each dictionary atom gets its largest ``|cos|`` to every singular direction of the
  matrix; atoms below a threshold are features no SVD direction is close to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


def _unit(X: Tensor) -> Tensor:
    return X / X.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def singular_directions(X: Float[Tensor, "n d"]) -> Float[Tensor, "r d"]:
    """The right singular directions of ``X`` (rows, strongest first)."""
    return torch.linalg.svd(X.double(), full_matrices=False).Vh.float()


@dataclass(frozen=True)
class RayStats:
    """Largest ``|cos|`` of each row to the top singular directions, and the baseline.

    Attributes:
        top: how many singular directions were compared.
        rows: ``[n]`` each row's largest ``|cos|``.
        baseline: ``[n]`` the same for random unit vectors (seeded).
    """

    top: int
    rows: Float[Tensor, " n"]
    baseline: Float[Tensor, " n"]

    def __post_init__(self) -> None:
        if self.rows.shape != self.baseline.shape:
            raise ValueError("rows and baseline must share a shape")

    def summary(self) -> dict[str, float]:
        """Medians and the share of rows above the baseline's 95th percentile."""
        q95 = float(self.baseline.quantile(0.95))
        return {
            "top_directions": self.top,
            "median_row": float(self.rows.median()),
            "median_baseline": float(self.baseline.median()),
            "baseline_q95": q95,
            "share_above_baseline_q95": float((self.rows > q95).float().mean()),
        }


def rays_vs_directions(X: Float[Tensor, "n d"], top: int = 32, seed: int = 0) -> RayStats:
    """:class:`RayStats` of ``X``'s rows against its top ``top`` singular directions."""
    V = singular_directions(X)[:top]
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(X.shape, generator=g)
    rows = (_unit(X.float()) @ V.T).abs().amax(1)
    base = (_unit(R) @ V.T).abs().amax(1)
    return RayStats(V.shape[0], rows, base)


@dataclass(frozen=True)
class UnseenAtoms:
    """Atoms far from every singular direction.

    Attributes:
        threshold: the ``|cos|`` under which an atom counts as unseen.
        best: ``[K]`` each atom's largest ``|cos|`` to any singular direction.
        unseen: indices of the atoms with ``best < threshold``, farthest first.
    """

    threshold: float
    best: Float[Tensor, " K"]
    unseen: Int[Tensor, " u"]

    @property
    def fraction(self) -> float:
        """Share of atoms unseen."""
        return len(self.unseen) / max(1, len(self.best))


def unseen_atoms(
    atoms: Float[Tensor, "K d"], directions: Float[Tensor, "r d"], threshold: float = 0.5
) -> UnseenAtoms:
    """Atoms whose largest ``|cos|`` to any of ``directions`` is below ``threshold``."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], not {threshold}")
    best = (_unit(atoms.float()) @ _unit(directions.float()).T).abs().amax(1)
    idx = (best < threshold).nonzero()[:, 0]
    idx = idx[best[idx].argsort()]
    return UnseenAtoms(threshold, best, idx)
