"""Random Gaussian controls: matrices of each kind's shape and scale, nothing learned.

A control is drawn in two steps so that it can be drawn without the model:
:func:`control_scales` takes each redrawn matrix's standard deviation from the weights
(a few numbers per layer, stored with the cache entry's checkpoint part), and
:func:`draw_control` draws i.i.d. normal matrices of those shapes and scales from a seed.
The draw order (:data:`CONTROL_MATRICES`) fixes each matrix's values, so the same seed and
scales give the same control whether the weights are loaded or not.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from core.model.weights import ModelMeta, ModelWeights
from core.svd.decompose import Decomposition, decompose_kind, degenerate_mask, dense_svd

#: The matrices a control redraws, in the order they are drawn.
CONTROL_MATRICES = ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out")
_PER_HEAD = ("W_Q", "W_K", "W_V", "W_O")


def control_scales(weights: ModelWeights) -> dict[str, Tensor]:
    """The standard deviation of each matrix a control redraws: ``[layer, 1]`` for the
    attention matrices (head 0 stands for the heads), ``[layer]`` for the MLP ones;
    ``W_gate`` only when the model has one.
    """
    out = {}
    for name in CONTROL_MATRICES:
        W = getattr(weights, name)
        if W is None:
            continue
        if name in _PER_HEAD:
            out[name] = W[:, :1].flatten(2).std(dim=-1)
        else:
            out[name] = W.flatten(1).std(dim=-1)
    return out


def draw_control(
    meta: ModelMeta,
    processing: str,
    scales: dict[str, Tensor],
    W_E: Tensor,
    W_U: Tensor,
    seed: int,
) -> ModelWeights:
    """A control model: each matrix of :func:`control_scales` redrawn as i.i.d. normal
    entries with its own standard deviation (one head per layer: drawing only head 0
    keeps it small, e.g. 2 GB less attention noise for GPT-2 XL). ``W_E`` and ``W_U`` are
    kept as given: controls are read through the real vocabulary.
    """
    m = meta
    shapes = {
        "W_Q": (m.n_layers, 1, m.d_model, m.d_head),
        "W_K": (m.n_layers, 1, m.d_model, m.d_head),
        "W_V": (m.n_layers, 1, m.d_model, m.d_head),
        "W_O": (m.n_layers, 1, m.d_head, m.d_model),
        "W_in": (m.n_layers, m.d_model, m.d_mlp),
        "W_gate": (m.n_layers, m.d_model, m.d_mlp),
        "W_out": (m.n_layers, m.d_mlp, m.d_model),
    }
    g = torch.Generator().manual_seed(seed)
    drawn: dict[str, Tensor | None] = {}
    for name in CONTROL_MATRICES:
        std = scales.get(name)
        if std is None:
            drawn[name] = None
            continue
        z = torch.randn(shapes[name], generator=g, dtype=std.dtype)
        drawn[name] = z * std.reshape(*std.shape, *([1] * (z.ndim - std.ndim)))
    return ModelWeights(
        meta=dataclasses.replace(meta, n_heads=1, n_kv_heads=1),
        processing=processing,
        W_E=W_E,
        W_U=W_U,
        ln1_w=None,
        ln2_w=None,
        lnf_w=None,
        **drawn,  # type: ignore[arg-type]
    )


def control_weights(weights: ModelWeights, seed: int) -> ModelWeights:
    """:func:`draw_control` with the scales of ``weights``."""
    return draw_control(
        weights.meta, weights.processing, control_scales(weights), weights.W_E, weights.W_U, seed
    )


def decompose_control(
    weights: ModelWeights, kind: str, degeneracy_tol: float, seed: int
) -> Decomposition:
    """The control of ``kind``: one random matrix per layer (head 0 stands for the heads).

    For the embedding the control is a Gaussian ``d_vocab x d_model`` matrix with
    ``W_E``'s scale (only ``weights.W_E`` is read, so a control model will do).
    """
    if kind == "embed":
        g = torch.Generator().manual_seed(seed + 7)
        W = torch.randn(weights.W_E.shape, generator=g) * weights.W_E.std().cpu()
        _, S, V = dense_svd(W[None])
        return Decomposition(
            kind, ((0, None),), S, None, V, degenerate_mask(S, degeneracy_tol), True
        )
    d = decompose_kind(control_weights(weights, seed), kind, degeneracy_tol)
    return dataclasses.replace(d, control=True)
