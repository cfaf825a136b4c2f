"""Stage 1, the model: load a checkpoint and read its weights as one
architecture-independent view (``ModelWeights``), raw or with the normalisation folded.
"""

from core.model.loading import LoadedModel, load_model
from core.model.weights import ModelMeta, ModelWeights, process, weights_from_params

__all__ = [
    "LoadedModel",
    "ModelMeta",
    "ModelWeights",
    "load_model",
    "process",
    "weights_from_params",
]
