"""What each matrix receives and writes at every token, captured with forward hooks on a
plain Hugging Face model (:func:`core.edit.hf.plain_model`).

Per layer, four tensors of the valid (unpadded) tokens of a batch:

* ``attn_in`` ``[T, d_model]``: the input of the attention projections (the output of
  the norm before attention, role ``ln1``), or under ``post`` that norm's bare
  normalisation ``n(x)`` (see :func:`bare_norm`);
* ``mlp_in`` ``[T, d_model]``: the same for the norm before the MLP (``ln2``);
* ``z`` ``[T, n_heads * d_head]``: the input of the attention output projection
  (``attn_out``), the heads' mixed values side by side;
* ``mlp_out`` ``[T, d_model]``: the output of the MLP's last projection (``mlp_out``),
  which is what the MLP adds to the residual stream.

Module roles come from the model's family (:mod:`core.model.families`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool
from torch import Tensor

from core.model.families import family_of


def bare_norm(module: Any, x: Tensor, centre: bool) -> Tensor:
    """The normalisation of ``module`` without its scale and bias: ``(x - mean) / std``
    for LayerNorm (``centre``), ``x / rms`` for RMSNorm, with the module's own epsilon.

    This is what a ``post`` reading matrix receives: the fold moved the scale into the
    matrix (:mod:`core.model.fold`) and drops the LayerNorm bias (a constant input).
    """
    mod = getattr(module, "original_component", module)
    eps: Any = getattr(mod, "eps", None)
    if eps is None:
        eps = getattr(mod, "variance_epsilon", 1e-5)
    x = x.float()
    if centre:
        return torch.nn.functional.layer_norm(x, x.shape[-1:], eps=float(eps))
    return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + float(eps))


@dataclass
class Captured:
    """One batch's captured tensors by role, each a list over layers (``None`` until
    the hook has run). See the module docstring for the roles.
    """

    attn_in: list[Tensor | None] = field(default_factory=list)
    mlp_in: list[Tensor | None] = field(default_factory=list)
    z: list[Tensor | None] = field(default_factory=list)
    mlp_out: list[Tensor | None] = field(default_factory=list)

    def get(self, role: str, layer: int) -> Tensor:
        """The tensor of ``role`` in ``layer``."""
        t = getattr(self, role)[layer]
        if t is None:
            raise RuntimeError(f"no {role} was captured in layer {layer}")
        return t


@contextmanager
def hooks(
    model: Any, n_layers: int, processing: str, centre: bool
) -> Iterator[tuple[Captured, list[Bool[Tensor, "b t"]]]]:
    """Hooks on ``model`` that fill a :class:`Captured` on each forward pass.

    Yields the captured tensors and a one-item list the caller sets to the batch's
    attention mask before each pass (only the mask's true tokens are kept, flattened
    in order). Removes the hooks on exit.
    """
    family = family_of(model)
    empty: list[Tensor | None] = [None] * n_layers
    cap = Captured(list(empty), list(empty), list(empty), list(empty))
    mask: list[Tensor] = [torch.ones(0, 0, dtype=torch.bool)]
    handles = []

    def keep(t: Tensor) -> Tensor:
        return t[mask[0].to(t.device)].detach().float()

    def norm_hook(role: str, layer: int) -> Any:
        def hook(mod: Any, args: tuple[Any, ...], out: Any) -> None:
            if processing == "post":
                value = bare_norm(mod, args[0], centre)
            else:
                value = out[0] if isinstance(out, tuple) else out
            getattr(cap, role)[layer] = keep(value)

        return hook

    def z_hook(layer: int) -> Any:
        def hook(mod: Any, args: tuple[Any, ...]) -> None:
            cap.z[layer] = keep(args[0])

        return hook

    def out_hook(layer: int) -> Any:
        def hook(mod: Any, args: tuple[Any, ...], out: Any) -> None:
            cap.mlp_out[layer] = keep(out)

        return hook

    try:
        for layer in range(n_layers):
            m = family.module
            handles.append(
                m(model, "ln1", layer).register_forward_hook(norm_hook("attn_in", layer))
            )
            handles.append(m(model, "ln2", layer).register_forward_hook(norm_hook("mlp_in", layer)))
            handles.append(m(model, "attn_out", layer).register_forward_pre_hook(z_hook(layer)))
            handles.append(m(model, "mlp_out", layer).register_forward_hook(out_hook(layer)))
        yield cap, mask
    finally:
        for h in handles:
            h.remove()
