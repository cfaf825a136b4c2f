"""The options of the decompositions beyond the SVD, and the result every method gives.

Every method turns the rows of one matrix (token embeddings, neurons' write or read
vectors, the heads' write vectors of a layer) into unit directions of the residual
stream, ordered by the share of the matrix's squared norm each explains, so the views
that read SVD directions (top and bottom tokens through ``W_U``) read them too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jaxtyping import Float
from torch import Tensor

#: Decomposition methods, in the order the selector lists them.
METHODS: tuple[str, ...] = ("svd", "dictionary", "nmf", "ica")
METHOD_NAMES: dict[str, str] = {
    "svd": "SVD",
    "dictionary": "Sparse dictionary",
    "nmf": "NMF",
    "ica": "ICA",
}
#: The matrices each method beyond the SVD reads (``core.settings`` kind names; ``ov``
#: is the stacked write side of a layer's heads, one decomposition per layer).
METHOD_MATRICES: dict[str, tuple[str, ...]] = {
    "dictionary": ("embed", "mlp_out", "ov"),
    "nmf": ("mlp_out", "ov"),
    "ica": ("embed", "mlp_in"),
}


@dataclass(frozen=True)
class DecomposeOptions:
    """Options of one decomposition build; any change (or a new seed) rebuilds its cache part.

    Attributes:
        method: ``dictionary``, ``nmf`` or ``ica`` (``svd`` is the cached SVD).
        n_components: atoms (dictionary, ``K``) or components (NMF, ICA); ``None``:
            ``4 * d_model`` atoms (at most half the rows) for a dictionary, 32
            components for NMF and ICA.
        nnz: non-zeros per row of the dictionary's OMP codes.
        n_iter: dictionary updates (OMP codes, then a least-squares dictionary) or the
            NMF/ICA solver's iteration limit (``None``: 8 / 100 / 200).
        max_rows: rows the fit sees at most (a weighted or uniform sample without
            replacement, seeded); errors are always measured on every row.
        seed: seed of the sampling, the initialisation and the random control.
        weighted: weigh the embedding's rows (tokens) by their frequency in the
            checkpoint's reference text (``heldout/*.txt``) when there is one.
    """

    method: str = "dictionary"
    n_components: int | None = None
    nnz: int = 3
    n_iter: int | None = None
    max_rows: int = 4096
    seed: int = 0
    weighted: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}.")
        if self.n_components is not None and self.n_components < 1:
            raise ValueError(f"n_components must be at least 1, not {self.n_components}.")
        if self.nnz < 1:
            raise ValueError(f"nnz must be at least 1, not {self.nnz}.")
        if self.n_iter is not None and self.n_iter < 1:
            raise ValueError(f"n_iter must be at least 1, not {self.n_iter}.")
        if self.max_rows < 2:
            raise ValueError(f"max_rows must be at least 2, not {self.max_rows}.")

    def components_for(self, d_model: int, n_rows: int | None = None) -> int:
        """The number of atoms or components for ``n_rows`` rows of width ``d_model``.

        A default dictionary has ``4 d_model`` atoms but at most ``n_rows / 2``: with as
        many atoms as rows (MLP out has only ``4 d_model`` rows) every row would be an
        atom of its own and the error trivially zero.
        """
        if self.n_components is not None:
            return self.n_components
        if self.method != "dictionary":
            return 32
        return 4 * d_model if n_rows is None else max(1, min(4 * d_model, n_rows // 2))

    def iterations(self) -> int:
        """The iteration limit (see ``n_iter``)."""
        if self.n_iter is not None:
            return self.n_iter
        return {"dictionary": 8, "nmf": 100}.get(self.method, 200)

    def replace(self, **changes: Any) -> DecomposeOptions:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The options as the cache part records them."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Components:
    """One method's directions for one matrix.

    Attributes:
        method: ``dictionary``, ``nmf`` or ``ica``.
        matrix: ``embed``, ``mlp_out``, ``mlp_in`` or ``ov`` (the layer's stacked heads).
        layer: the layer (0 for the embedding).
        directions: unit residual-stream directions ``[c, d_model]``, strongest first,
            each signed so that its largest token projection is positive.
        strength: the share of the matrix's (weighted) squared norm each explains ``[c]``.
        token_weights: NMF only: each component's promoted minus suppressed token
            weights ``[c, d_vocab]`` (what its top and bottom tokens are read from).
        fvu: fraction of (weighted) squared norm the decomposition leaves unexplained.
        n_rows: rows of the matrix; ``n_fit``: rows the fit saw (a sample when fewer).
        control: whether this is the fit to the random Gaussian matrix of the same shape
            and scale.
    """

    method: str
    matrix: str
    layer: int
    directions: Float[Tensor, "c d_model"]
    strength: Float[Tensor, " c"]
    token_weights: Float[Tensor, "c d_vocab"] | None
    fvu: float
    n_rows: int
    n_fit: int
    control: bool = False

    def __post_init__(self) -> None:
        c = self.directions.shape[0]
        if self.strength.shape != (c,):
            raise ValueError(f"strength has shape {tuple(self.strength.shape)}, want ({c},)")
        if self.token_weights is not None and self.token_weights.shape[0] != c:
            raise ValueError("token_weights needs one row per component")

    @property
    def n(self) -> int:
        """Number of components."""
        return int(self.directions.shape[0])

    @property
    def note(self) -> str:
        """One sentence on what the fit saw (rows sampled or not)."""
        if self.n_fit < self.n_rows:
            return f"fitted on a sample of {self.n_fit} of {self.n_rows} rows; errors on all rows"
        return f"fitted on all {self.n_rows} rows"
