"""Semantic search ("SVD tracing"): every direction of a model in one index, ranked
against a comma-separated query of concepts.
"""

from core.search.engine import SearchHit, SearchResult, rank, search
from core.search.index import SearchIndex, build_index, default_kinds

__all__ = [
    "SearchHit",
    "SearchIndex",
    "SearchResult",
    "build_index",
    "default_kinds",
    "rank",
    "search",
]
