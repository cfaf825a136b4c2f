"""Plain references read straight from Hugging Face modules, independent of core/.

Each function rebuilds a component's dense matrix from the HF model's own parameters
(Conv1D / fused QKV / separate projections), in the row-vector convention ``x @ W``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def _arch(model: Any) -> str:
    name = type(model).__name__
    if name.startswith("GPT2"):
        return "gpt2"
    if name.startswith("GPTNeoX"):
        return "neox"
    if name.startswith("Llama"):
        return "llama"
    raise ValueError(name)


def ov_matrix(model: Any, layer: int, head: int) -> Tensor:
    """Dense W_V W_O of one head, ``[d_model, d_model]``."""
    cfg = model.config
    arch = _arch(model)
    if arch == "gpt2":
        d, nh = cfg.n_embd, cfg.n_head
        dh = d // nh
        blk = model.transformer.h[layer].attn
        W_V = blk.c_attn.weight[:, 2 * d + head * dh : 2 * d + (head + 1) * dh]
        W_O = blk.c_proj.weight[head * dh : (head + 1) * dh]
    elif arch == "neox":
        d, nh = cfg.hidden_size, cfg.num_attention_heads
        dh = d // nh
        blk = model.gpt_neox.layers[layer].attention
        qkv = blk.query_key_value.weight.reshape(nh, 3, dh, d)
        W_V = qkv[head, 2].T
        W_O = blk.dense.weight[:, head * dh : (head + 1) * dh].T
    else:
        d, nh, nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
        dh = d // nh
        blk = model.model.layers[layer].self_attn
        g = head // (nh // nkv)
        W_V = blk.v_proj.weight[g * dh : (g + 1) * dh].T
        W_O = blk.o_proj.weight[:, head * dh : (head + 1) * dh].T
    return (W_V @ W_O).detach().double()


def mlp_matrix(model: Any, kind: str, layer: int) -> Tensor:
    """Dense W_in ``[d, m]``, W_gate ``[d, m]`` or W_out ``[m, d]`` of one layer."""
    arch = _arch(model)
    if arch == "gpt2":
        mlp = model.transformer.h[layer].mlp
        W = {"mlp_in": mlp.c_fc.weight, "mlp_out": mlp.c_proj.weight}[kind]
    elif arch == "neox":
        mlp = model.gpt_neox.layers[layer].mlp
        W = {"mlp_in": mlp.dense_h_to_4h.weight.T, "mlp_out": mlp.dense_4h_to_h.weight.T}[kind]
    else:
        mlp = model.model.layers[layer].mlp
        W = {
            "mlp_in": mlp.up_proj.weight.T,
            "mlp_gate": mlp.gate_proj.weight.T,
            "mlp_out": mlp.down_proj.weight.T,
        }[kind]
    return W.detach().double()


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
