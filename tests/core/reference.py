"""Plain references read straight from Hugging Face modules, independent of core/'s maths.

Each function rebuilds a component's dense matrix from the HF model's own parameters
(Conv1D / fused QKV / separate projections), in the row-vector convention ``x @ W``.
Only *where* a module lives comes from the family files (``core.model.families``);
how its weight is laid out is decided here, from the module's own class and the
architecture's documented QKV packing, so a wrong layout in core/ cannot hide.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from core.model.families import family_of


def _arch(model: Any) -> str:
    return family_of(model).name


def module(model: Any, role: str, layer: int) -> Any:
    """The HF module of ``role`` (``ln1``, ``attn_out``, ``mlp_in``, ...) in ``layer``."""
    return model.get_submodule(family_of(model).path(role, layer))


def xw(mod: Any) -> Tensor:
    """A projection's matrix as ``x @ W``: Conv1D stores that, nn.Linear its transpose."""
    mod = getattr(mod, "original_component", mod)  # a TransformerLens bridge's wrapper
    if isinstance(mod, torch.nn.Linear):
        return mod.weight.T
    assert type(mod).__name__ == "Conv1D", type(mod)
    return mod.weight


def value_matrix(model: Any, layer: int, head: int) -> Tensor:
    """W_V of one query head, ``[d_model, d_head]`` (shared within a GQA group)."""
    cfg = model.config
    d, nh = cfg.hidden_size, cfg.num_attention_heads
    dh = d // nh
    arch = _arch(model)
    if arch == "gpt2":  # [d, 3d]: all queries, then all keys, then all values
        return xw(module(model, "qkv", layer))[:, 2 * d + head * dh : 2 * d + (head + 1) * dh]
    if arch == "neox":  # output rows grouped by head, then (q, k, v), then d_head
        return module(model, "qkv", layer).weight.reshape(nh, 3, dh, d)[head, 2].T
    g = head // (nh // cfg.num_key_value_heads)  # one value head per group of query heads
    return xw(module(model, "v", layer))[:, g * dh : (g + 1) * dh]


def out_matrix(model: Any, layer: int, head: int) -> Tensor:
    """W_O of one head, ``[d_head, d_model]``: a view of its rows of the stored weight."""
    dh = model.config.hidden_size // model.config.num_attention_heads
    return xw(module(model, "attn_out", layer))[head * dh : (head + 1) * dh]


def ov_matrix(model: Any, layer: int, head: int) -> Tensor:
    """Dense W_V W_O of one head, ``[d_model, d_model]``."""
    return (value_matrix(model, layer, head) @ out_matrix(model, layer, head)).detach().double()


def mlp_matrix(model: Any, kind: str, layer: int) -> Tensor:
    """Dense W_in ``[d, m]``, W_gate ``[d, m]`` or W_out ``[m, d]`` of one layer."""
    return xw(module(model, kind, layer)).detach().double()


def norm_weight(model: Any, layer: int, which: int) -> Tensor:
    """The scale ``[d_model]`` of the norm before attention (``which=1``) or the MLP (2)."""
    return module(model, f"ln{which}", layer).weight.detach().double()


def final_norm(model: Any) -> Any:
    """The norm before the unembedding."""
    return model.get_submodule(family_of(model).final_norm)


def centres(model: Any) -> bool:
    """Whether the model's norms subtract the mean (LayerNorm, not RMSNorm)."""
    ln = module(model, "ln1", 0)
    return isinstance(getattr(ln, "original_component", ln), torch.nn.LayerNorm)


def fold(W: Tensor, w: Tensor, centre: bool) -> Tensor:
    """``diag(w) W``, centred over its rows for LayerNorm: the textbook fold."""
    W = w[:, None] * W
    return W - W.mean(dim=0, keepdim=True) if centre else W


def component(model: Any, kind: str, layer: int, head: int | None, processing: str) -> Tensor:
    """The dense matrix of one component as the analysis reads it under ``processing``:
    under ``post`` the reading side is folded (OV through ln1, MLP in/gate through ln2)."""
    if kind == "ov":
        assert head is not None
        W, which = ov_matrix(model, layer, head), 1
    else:
        W, which = mlp_matrix(model, kind, layer), 2
    if processing == "post" and kind != "mlp_out":
        W = fold(W, norm_weight(model, layer, which), centres(model))
    return W


def unembed(model: Any) -> Tensor:
    """W_U ``[d_model, d_vocab]`` as stored (no final-norm folding)."""
    return model.get_output_embeddings().weight.detach().double().T


def token_side(kind: str, W: Tensor) -> tuple[Tensor, Tensor]:
    """Singular values and token-side singular vectors (columns) of a dense matrix."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    vecs = U if kind in ("mlp_in", "mlp_gate") else Vh.T
    return S, vecs


def end_sets(proj: Tensor, k: int) -> set[frozenset[int]]:
    """The two token ends of a projection as an unordered pair (sign-insensitive)."""
    top = frozenset(proj.topk(k).indices.tolist())
    bottom = frozenset((-proj).topk(k).indices.tolist())
    return {top, bottom}


def unembed_as_read(W_U: Tensor, projection: str) -> Tensor:
    """The unembedding a projection reads directions through, written out in float64:
    ``raw`` ``W_U``; ``centred`` minus the mean column; ``standardized`` each centred
    column scaled to norm ``sqrt(d_model)`` (its logit's z-score under random unit
    directions).
    """
    W = W_U.detach().double()
    if projection == "raw":
        return W
    C = W - W.mean(dim=1, keepdim=True)
    if projection == "centred":
        return C
    assert projection == "standardized", projection
    return C * (W.shape[0] ** 0.5) / C.norm(dim=0, keepdim=True)
