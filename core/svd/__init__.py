"""Stage 2, the decomposition: SVDs of every component (factored for OV and QK), the
random controls, and the projection of each direction to tokens through W_U.
"""

from core.svd.decompose import Decomposition, decompose_kind, dense_svd, factored_svd
from core.svd.project import (
    TokenTable,
    TopTokens,
    orient,
    project_topk,
    read_unembed,
    token_table,
)

__all__ = [
    "Decomposition",
    "TokenTable",
    "TopTokens",
    "decompose_kind",
    "dense_svd",
    "factored_svd",
    "orient",
    "project_topk",
    "read_unembed",
    "token_table",
]
