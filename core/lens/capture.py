"""One plain Hugging Face forward pass of a prompt, with what the lens reads hooked out.

The model is the plain module (:func:`core.edit.hf.plain_model`), not the
TransformerLens bridge, so the numbers are the model's own. Forward hooks on each
block (its output is the residual stream after it), on the norms before attention and
the MLP (their output is what the reading matrices receive), and forward pre-hooks on
attention's output projection and the MLP's out matrix (their input is what the
writing matrices multiply) record everything one pass needs; nothing is run twice.

The last block's output is taken from its hook, not from HF's ``hidden_states``, whose
last entry already has the final norm applied (GPT-2, GPT-NeoX and Llama alike): the
final norm is applied here once, by the model's own module, to every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.model.families import family_of


@dataclass(frozen=True)
class Capture:
    """What one forward pass of a prompt leaves behind (float32, on the CPU).

    ``rows`` is ``n_layers + 1``: row 0 is the embedding (the residual stream entering
    block 0), row ``l + 1`` the residual stream after block ``l``.

    Attributes:
        ids: the prompt's token ids ``[pos]``.
        resid: the residual stream ``[rows, pos, d_model]``, before the final norm.
        normed: ``resid`` through the model's final norm ``[rows, pos, d_model]``; its
            last row is exactly what the model unembeds.
        W_U: the unembedding the model applies, ``x @ W_U`` ``[d_model, d_vocab]``.
        b_U: its bias ``[d_vocab]``, or ``None``.
        norm_out: output of the norm before attention (``[:, 0]``) and before the MLP
            (``[:, 1]``), ``[layer, 2, pos, d_model]``: the input the reading matrices
            receive as stored (``raw``).
        norm_bare: the bare normalisation ``n(x)`` of the same norms (output minus bias,
            divided by scale), ``[layer, 2, pos, d_model]``: the input the ``post``
            (folded) matrices receive.
        attn_z: each head's input to attention's output projection (its attention-weighted
            values), ``[layer, pos, head, d_head]``.
        mlp_hidden: the MLP's hidden activations, the input of its out matrix,
            ``[layer, pos, d_mlp]``.
    """

    ids: Int[Tensor, " pos"]
    resid: Float[Tensor, "rows pos d_model"]
    normed: Float[Tensor, "rows pos d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"] | None
    norm_out: Float[Tensor, "layer 2 pos d_model"]
    norm_bare: Float[Tensor, "layer 2 pos d_model"]
    attn_z: Float[Tensor, "layer pos head d_head"]
    mlp_hidden: Float[Tensor, "layer pos d_mlp"]

    def __post_init__(self) -> None:
        rows, t, d = self.resid.shape
        L = rows - 1
        if self.ids.shape != (t,) or self.normed.shape != self.resid.shape:
            raise ValueError("ids, resid and normed must share the positions")
        if self.W_U.shape[0] != d or (
            self.b_U is not None and self.b_U.shape[0] != self.W_U.shape[1]
        ):
            raise ValueError(f"W_U {tuple(self.W_U.shape)} does not fit d_model {d}")
        for name in ("norm_out", "norm_bare"):
            if getattr(self, name).shape != (L, 2, t, d):
                raise ValueError(f"{name} must be [{L}, 2, {t}, {d}]")
        if self.attn_z.shape[:2] != (L, t) or self.mlp_hidden.shape[:2] != (L, t):
            raise ValueError("attn_z and mlp_hidden must be [layer, pos, ...]")

    @property
    def n_layers(self) -> int:
        """Blocks of the model."""
        return int(self.resid.shape[0]) - 1

    def logits(self, row: int) -> Float[Tensor, "pos d_vocab"]:
        """The logit lens of one row of :attr:`normed`: ``normed[row] @ W_U + b_U``."""
        out = self.normed[row] @ self.W_U
        return out if self.b_U is None else out + self.b_U


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def capture(model: Any, ids: Sequence[int]) -> Capture:
    """Run ``model`` (a plain HF causal LM) on ``ids`` once and record the lens's inputs.

    Raises:
        SpecError: the model's family is unknown (its module layout is needed).
    """
    family = family_of(model)
    cfg = model.config
    L = int(getattr(cfg, family.config_keys["n_layers"]))
    H = int(getattr(cfg, family.config_keys["n_heads"]))
    dev = next(model.parameters()).device
    x = torch.tensor([list(ids)], device=dev)
    resid: list[Tensor | None] = [None] * (L + 1)
    norms: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    z: list[Tensor | None] = [None] * L
    hidden: list[Tensor | None] = [None] * L

    def embed_hook(mod: Any, args: Any, kwargs: Any) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        resid[0] = h[0].detach().float().cpu()

    def block_hook(layer: int) -> Any:
        def hook(mod: Any, args: Any, output: Any) -> None:
            resid[layer + 1] = _first(output)[0].detach().float().cpu()

        return hook

    def norm_hook(layer: int, which: int) -> Any:
        def hook(mod: Any, args: Any, output: Any) -> None:
            out = _first(output)[0].detach().float()
            bare = out
            bias = getattr(mod, "bias", None)
            if bias is not None:
                bare = bare - bias.detach().float()
            weight = getattr(mod, "weight", None)
            if weight is not None:
                bare = bare / weight.detach().float()
            norms[(layer, which)] = (out.cpu(), bare.cpu())

        return hook

    def z_hook(layer: int) -> Any:
        def hook(mod: Any, args: Any) -> None:
            h = args[0][0].detach().float().cpu()
            z[layer] = h.reshape(h.shape[0], H, -1)

        return hook

    def hidden_hook(layer: int) -> Any:
        def hook(mod: Any, args: Any) -> None:
            hidden[layer] = args[0][0].detach().float().cpu()

        return hook

    handles = [
        model.get_submodule(family.block.format(0)).register_forward_pre_hook(
            embed_hook, with_kwargs=True
        )
    ]
    try:
        for layer in range(L):
            block = model.get_submodule(family.block.format(layer))
            handles.append(block.register_forward_hook(block_hook(layer)))
            for which, role in ((0, "ln1"), (1, "ln2")):
                mod = family.module(model, role, layer)
                handles.append(mod.register_forward_hook(norm_hook(layer, which)))
            attn_out = family.module(model, "attn_out", layer)
            handles.append(attn_out.register_forward_pre_hook(z_hook(layer)))
            mlp_out = family.module(model, "mlp_out", layer)
            handles.append(mlp_out.register_forward_pre_hook(hidden_hook(layer)))
        model(input_ids=x)
    finally:
        for h in handles:
            h.remove()
    stream = torch.stack([r for r in resid if r is not None])
    final_norm = model.get_submodule(family.final_norm)
    normed = _first(final_norm(stream.to(dev))).detach().float().cpu()
    unembed = model.get_output_embeddings()
    W_U = unembed.weight.detach().float().cpu().T
    bias = getattr(unembed, "bias", None)
    pairs = [[norms[(layer, w)] for w in (0, 1)] for layer in range(L)]
    return Capture(
        ids=torch.tensor(list(ids)),
        resid=stream,
        normed=normed,
        W_U=W_U,
        b_U=None if bias is None else bias.detach().float().cpu(),
        norm_out=torch.stack([torch.stack([p[0] for p in row]) for row in pairs]),
        norm_bare=torch.stack([torch.stack([p[1] for p in row]) for row in pairs]),
        attn_z=torch.stack([t for t in z if t is not None]),
        mlp_hidden=torch.stack([t for t in hidden if t is not None]),
    )
