"""The normalisation fold: a norm's scale (and LayerNorm's centring) moved into the
matrices that read its output, so the ``post`` view reads the normalised stream.

A reading matrix ``W`` sees ``norm(x) = w * n(x) (+ b)`` where ``n`` is the bare
normalisation, and ``norm(x) @ W = n(x) @ diag(w) W`` (plus a constant). LayerNorm's
``n(x)`` has zero mean, so the component of each column of ``diag(w) W`` along the
all-ones vector is never seen; removing it leaves exactly what the model can read.

This module is the one place the fold is computed: :func:`core.model.weights.process`
folds whole weight stacks with :func:`fold_like`, and the edit code folds its updates
with it and realises a folded update on a stored matrix with :func:`unfold_rows`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:  # weights.process imports this module
    from core.model.weights import ModelWeights

#: Each matrix ``post`` folds (a ``ModelWeights`` field) -> the norm scale it reads through.
FOLDED: dict[str, str] = {
    "W_Q": "ln1_w",
    "W_K": "ln1_w",
    "W_V": "ln1_w",
    "W_in": "ln2_w",
    "W_gate": "ln2_w",
    "W_U": "lnf_w",
}


def fold(
    W: Float[Tensor, "*#batch d_model n"],
    scale: Float[Tensor, "*#batch d_model"] | None,
    centre: bool,
) -> Float[Tensor, "*batch d_model n"]:
    """``diag(scale) W``, then for LayerNorm (``centre``) minus its mean over ``d_model``.

    ``d_model`` is the second-to-last axis; leading axes broadcast with ``scale``'s
    (``[layer, 1, d_model]`` scales every head of a layer).
    """
    if scale is None:
        return W - W.mean(dim=-2, keepdim=True) if centre else W
    W = W * scale[..., None]
    if centre:
        # In place on the fresh product: a second whole-stack buffer (e.g. GPT-2 XL's
        # unembedding, 320 MB) cost more in page faults than the subtraction.
        W -= W.mean(dim=-2, keepdim=True)
    return W


def _scale(raw: ModelWeights, name: str, W: Tensor, layer: int | None) -> Tensor | None:
    ln = getattr(raw, FOLDED[name])
    if ln is None:
        return None
    if layer is not None:
        ln = ln[layer]
    # Give the scale one axis per head axis of W, e.g. [layer, d] -> [layer, 1, d].
    lead = W.ndim - ln.ndim - 1
    return ln.reshape(*ln.shape[:-1], *([1] * lead), ln.shape[-1]).to(W.dtype)


def fold_like(raw: ModelWeights, name: str, W: Tensor, layer: int | None = None) -> Tensor:
    """``W`` folded as ``post`` folds matrix ``name`` of ``raw``; unchanged if it folds none.

    ``W`` is shaped like the whole stack ``getattr(raw, name)``, or like one layer of it
    when ``layer`` is given (an edit's update, ``[d_model, n]``).
    """
    if name not in FOLDED:
        return W
    return fold(W, _scale(raw, name, W, layer), raw.meta.normalization == "LN")


def unfold_rows(
    raw: ModelWeights, name: str, layer: int, rows: Float[Tensor, " d_model"]
) -> Float[Tensor, " d_model"]:
    """The left factor ``l`` of an update ``l r^T`` of stored matrix ``name`` whose fold
    is ``rows r^T``: ``rows / scale``.

    Under LayerNorm ``rows`` must be orthogonal to the all-ones vector (a left singular
    vector of a centred matrix is), so the centring leaves its fold unchanged. Where the
    scale is zero the model never reads that input coordinate; its row stays zero.
    """
    scale = _scale(raw, name, rows[:, None], layer) if name in FOLDED else None
    if scale is None:
        return rows
    nz = scale != 0
    return torch.where(nz, rows / torch.where(nz, scale, 1.0), 0.0)
