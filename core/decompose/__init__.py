"""Stage 4, decompositions beyond the SVD: sparse overcomplete dictionaries (OMP codes),
NMF of the token-space image, FastICA, each with its random Gaussian control, and how
their directions compare with the SVD's. Every method yields unit residual-stream
directions, strongest first, so the SVD's token views read them too.
"""

from core.decompose.build import check_method, components, fit_components, rows_and_weights
from core.decompose.compare import RayStats, UnseenAtoms, rays_vs_directions, unseen_atoms
from core.decompose.dictionary import CurvePoint, SparseCodes, dictionary, dictionary_curves, omp
from core.decompose.ica import IcaFit, fast_ica, ica
from core.decompose.nmf import nmf, nmf_factors, split_image
from core.decompose.options import (
    METHOD_MATRICES,
    METHOD_NAMES,
    METHODS,
    Components,
    DecomposeOptions,
)

__all__ = [
    "METHODS",
    "METHOD_MATRICES",
    "METHOD_NAMES",
    "Components",
    "CurvePoint",
    "DecomposeOptions",
    "IcaFit",
    "RayStats",
    "SparseCodes",
    "UnseenAtoms",
    "check_method",
    "components",
    "dictionary",
    "dictionary_curves",
    "fast_ica",
    "fit_components",
    "ica",
    "nmf",
    "nmf_factors",
    "omp",
    "rays_vs_directions",
    "rows_and_weights",
    "split_image",
    "unseen_atoms",
]
