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
from collections.abc import Collection

import torch
from torch import Tensor

from core.model.weights import READS, ModelMeta, ModelWeights
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
    kinds: Collection[str] | None = None,
) -> ModelWeights:
    """A control model: each matrix of :func:`control_scales` redrawn as i.i.d. normal
    entries with its own standard deviation (one head per layer: drawing only head 0
    keeps it small, e.g. 2 GB less attention noise for GPT-2 XL). ``W_E`` and ``W_U`` are
    kept as given: controls are read through the real vocabulary.

    With ``kinds``, only what those kinds read (:data:`~core.model.weights.READS`) is
    kept: the draw stops after the last such matrix, a matrix drawn before it only to
    advance the stream is dropped, and every matrix not kept is NaN (a zero-stride view,
    no memory), so that a kind not asked for cannot be decomposed by mistake. The kept
    matrices equal the full draw's. For the spectra of one OV head this skips every MLP
    matrix (for GPT-2 XL, 3.9 GB of noise).
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
    keep = set(CONTROL_MATRICES if kinds is None else (n for k in kinds for n in READS[k]))
    last = max((i for i, n in enumerate(CONTROL_MATRICES) if n in keep), default=-1)
    g = torch.Generator().manual_seed(seed)
    drawn: dict[str, Tensor | None] = {}
    for i, name in enumerate(CONTROL_MATRICES):
        std = scales.get(name)
        if std is None:
            drawn[name] = None
            continue
        undrawn = torch.full((), float("nan"), dtype=std.dtype).expand(shapes[name])
        if i > last:
            drawn[name] = undrawn
            continue
        # The stream's order fixes the values, so a matrix before the last kept one is
        # drawn even when it is dropped.
        z = torch.randn(shapes[name], generator=g, dtype=std.dtype)
        if name in keep:
            drawn[name] = z * std.reshape(*std.shape, *([1] * (z.ndim - std.ndim)))
        else:
            drawn[name] = undrawn
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


def is_undrawn(t: Tensor) -> bool:
    """Whether ``t`` is a matrix :func:`draw_control` left out (a NaN placeholder)."""
    return t.ndim > 0 and all(s == 0 for s in t.stride())


def control_weights(
    weights: ModelWeights, seed: int, kinds: Collection[str] | None = None
) -> ModelWeights:
    """:func:`draw_control` with the scales of ``weights``."""
    w = weights
    return draw_control(w.meta, w.processing, control_scales(w), w.W_E, w.W_U, seed, kinds)


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
    d = decompose_kind(control_weights(weights, seed, (kind,)), kind, degeneracy_tol)
    return dataclasses.replace(d, control=True)
