"""Stage 3, the cache: build a model's decompositions and projections once, keep them
on disk as safetensors + JSON, and read them back checked.
"""

from core.cache.build import build_controls, build_svd
from core.cache.store import KindResult, ModelSVD

__all__ = ["KindResult", "ModelSVD", "build_controls", "build_svd"]
