"""One plain Hugging Face forward pass of a prompt, with what the lens reads hooked out.

The model is the plain module (:func:`core.edit.hf.plain_model`), not the
TransformerLens bridge, so the numbers are the model's own. Forward hooks on each
block (its output is the residual stream after it), and :mod:`core.activations`'s hooks
(what each matrix receives and each head and MLP writes, the inputs of a direction's
activation) record everything one pass needs; nothing is run twice.

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

from core.activations.capture import Captured, hooks
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
        processing: the view the next four were captured for (``raw`` or ``post``).
        attn_in, mlp_in, z, mlp_out: per layer, what each matrix receives and what the
            MLP writes, as :mod:`core.activations.capture` defines them (its hooks
            recorded them): ``[layer, pos, d_model]``, ``[layer, pos, d_model]``,
            ``[layer, pos, n_heads * d_head]``, ``[layer, pos, d_model]``.
    """

    ids: Int[Tensor, " pos"]
    resid: Float[Tensor, "rows pos d_model"]
    normed: Float[Tensor, "rows pos d_model"]
    W_U: Float[Tensor, "d_model d_vocab"]
    b_U: Float[Tensor, " d_vocab"] | None
    processing: str
    attn_in: Float[Tensor, "layer pos d_model"]
    mlp_in: Float[Tensor, "layer pos d_model"]
    z: Float[Tensor, "layer pos hd"]
    mlp_out: Float[Tensor, "layer pos d_model"]

    def __post_init__(self) -> None:
        rows, t, d = self.resid.shape
        L = rows - 1
        if self.ids.shape != (t,) or self.normed.shape != self.resid.shape:
            raise ValueError("ids, resid and normed must share the positions")
        if self.W_U.shape[0] != d or (
            self.b_U is not None and self.b_U.shape[0] != self.W_U.shape[1]
        ):
            raise ValueError(f"W_U {tuple(self.W_U.shape)} does not fit d_model {d}")
        for name in ("attn_in", "mlp_in", "mlp_out"):
            if getattr(self, name).shape != (L, t, d):
                raise ValueError(f"{name} must be [{L}, {t}, {d}]")
        if self.z.shape[:2] != (L, t):
            raise ValueError(f"z must be [{L}, {t}, n_heads * d_head]")

    @property
    def n_layers(self) -> int:
        """Blocks of the model."""
        return int(self.resid.shape[0]) - 1

    def logits(self, row: int) -> Float[Tensor, "pos d_vocab"]:
        """The logit lens of one row of :attr:`normed`: ``normed[row] @ W_U + b_U``."""
        return self.unembed(self.normed[row])

    def unembed(self, x: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        """``x @ W_U + b_U``: what the model's unembedding makes of normed streams."""
        out = x @ self.W_U
        return out if self.b_U is None else out + self.b_U

    def captured(self) -> Captured:
        """The per-layer tensors as :mod:`core.activations`'s readers take them."""
        return Captured(
            attn_in=list(self.attn_in),
            mlp_in=list(self.mlp_in),
            z=list(self.z),
            mlp_out=list(self.mlp_out),
        )


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def capture(
    model: Any, ids: Sequence[int], processing: str = "raw", centre: bool = True
) -> Capture:
    """Run ``model`` (a plain HF causal LM) on ``ids`` once and record the lens's inputs.

    ``processing`` and ``centre`` (whether the norms are LayerNorm, which centres) say
    which input the reading matrices receive (:func:`core.activations.capture.hooks`).

    Raises:
        SpecError: the model's family is unknown (its module layout is needed).
    """
    family = family_of(model)
    L = int(getattr(model.config, family.config_keys["n_layers"]))
    dev = next(model.parameters()).device
    x = torch.tensor([list(ids)], device=dev)
    resid: list[Tensor | None] = [None] * (L + 1)

    def embed_hook(mod: Any, args: Any, kwargs: Any) -> None:
        h = args[0] if args else kwargs["hidden_states"]
        resid[0] = h[0].detach().float().cpu()

    def block_hook(layer: int) -> Any:
        def hook(mod: Any, args: Any, output: Any) -> None:
            resid[layer + 1] = _first(output)[0].detach().float().cpu()

        return hook

    block = family.block.format
    handles = [
        model.get_submodule(block(0)).register_forward_pre_hook(embed_hook, with_kwargs=True)
    ]
    try:
        for layer in range(L):
            handles.append(
                model.get_submodule(block(layer)).register_forward_hook(block_hook(layer))
            )
        with hooks(model, L, processing, centre) as (cap, mask):
            mask[0] = torch.ones(x.shape, dtype=torch.bool)
            model(input_ids=x)
    finally:
        for h in handles:
            h.remove()
    stream = torch.stack([r for r in resid if r is not None])
    final_norm = model.get_submodule(family.final_norm)
    normed = _first(final_norm(stream.to(dev))).detach().float().cpu()
    unembed = model.get_output_embeddings()
    bias = getattr(unembed, "bias", None)

    def stacked(role: str) -> Tensor:
        return torch.stack([cap.get(role, layer).cpu() for layer in range(L)])

    return Capture(
        ids=torch.tensor(list(ids)),
        resid=stream,
        normed=normed,
        W_U=unembed.weight.detach().float().cpu().T,
        b_U=None if bias is None else bias.detach().float().cpu(),
        processing=processing,
        attn_in=stacked("attn_in"),
        mlp_in=stacked("mlp_in"),
        z=stacked("z"),
        mlp_out=stacked("mlp_out"),
    )
