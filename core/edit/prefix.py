"""Forward passes that start at a layer: an edit of layer ``L`` leaves the residual
stream entering ``L`` as it was, so passes of many edits of one layer share the
unedited model's first ``L`` layers.

A truncation sweep runs 13 variants of each layer's matrix over the same windows; with
the prefix computed once, a variant of layer ``L`` of ``n`` runs ``n - L`` blocks and
the unembedding rather than the whole model.

The pass itself is the Hugging Face model's own forward (its masks, rotary positions,
final norm and unembedding), given the stream entering ``L`` as its input embeddings
while its block list holds only blocks ``L`` onward. A model that adds learned position
embeddings to its input (GPT-2) gets them subtracted first, so it adds them back.
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
class Prefix:
    """The unedited model's residual stream entering block ``layer``, for windows ``ids``,
    as the model's input embeddings (learned position embeddings taken out).
    """

    layer: int
    ids: Int[Tensor, "n t"]
    embeds: Float[Tensor, "n t d_model"]


@torch.no_grad()
def prefixes(
    model: Any, ids: Int[Tensor, "n t"], layers: Sequence[int], batch: int = 8
) -> dict[int, Prefix]:
    """The stream entering each block of ``layers`` in a plain Hugging Face ``model``
    (unedited before those blocks), from one pass over ``ids`` in batches of ``batch``
    windows, on ``model``'s device.
    """
    fam = family_of(model)
    dev = next(model.parameters()).device
    wanted = sorted(set(layers))
    parts: dict[int, list[Tensor]] = {layer: [] for layer in wanted}
    for s in range(0, ids.shape[0], batch):
        x = ids[s : s + batch].to(dev)
        hidden = model(input_ids=x, output_hidden_states=True, use_cache=False).hidden_states
        pos = None
        if fam.position_embed:
            pos = model.get_submodule(fam.position_embed)(torch.arange(x.shape[1], device=dev))
        for layer in wanted:
            h = hidden[layer]
            parts[layer].append(h if pos is None else h - pos[None])
    return {layer: Prefix(layer, ids, torch.cat(parts[layer])) for layer in wanted}


@torch.no_grad()
def logprobs_from(
    model: Any, start: Prefix, rows: slice | None = None
) -> Float[Tensor, "b t vocab"]:
    """Next-token log-probabilities (float32, CPU) of ``model`` run from ``start``'s
    layer on its stream (``rows``: a slice of its windows): equal to a whole pass of
    ``model`` when ``model`` matches the prefix's model before that layer.

    ``model`` must be one the caller owns (an edited copy): its block list is swapped
    for the pass and put back.
    """
    fam = family_of(model)
    parent, name = fam.layers.rsplit(".", 1)
    holder = model.get_submodule(parent)
    blocks = getattr(holder, name)
    embeds = start.embeds if rows is None else start.embeds[rows]
    setattr(holder, name, torch.nn.ModuleList(list(blocks)[start.layer :]))
    try:
        logits = model(inputs_embeds=embeds, use_cache=False).logits
    finally:
        setattr(holder, name, blocks)
    return torch.log_softmax(logits.float(), dim=-1).cpu()
