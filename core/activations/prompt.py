"""Every direction's activation at every position of one token sequence (a prompt), with
the same definition and code as the dataset examples (:mod:`core.activations.readers`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from core.activations.capture import hooks
from core.activations.readers import SideReader, side_name, side_readers
from core.analysis import Analysis
from core.edit.hf import plain_model
from core.errors import SpecError


def token_activations(
    analysis: Analysis, ids: Sequence[int], readers: Sequence[SideReader] | None = None
) -> dict[str, Float[Tensor, "T n"]]:
    """Activations ``[len(ids), n]`` of every direction of every side (by
    ``<kind>.<side>``; columns as in :class:`~core.activations.readers.SideReader`) at
    each position of ``ids``, read in one forward pass on the CPU or the settings' device.

    ``ids`` are used as given (prepend a BOS token yourself if the model expects one).
    ``readers`` (from :func:`~core.activations.readers.side_readers`) can be passed in to
    reuse them across calls.
    """
    if len(ids) == 0:
        raise SpecError("The prompt has no tokens; type some text.")
    model_info = analysis.model
    if model_info is None:
        raise SpecError("Activations need the model; open the analysis with open_analysis.")
    device = analysis.settings.torch_device()
    if readers is None:
        readers = side_readers(analysis, device)
    model = plain_model(analysis).to(device)
    meta = analysis.meta
    x = torch.tensor([list(ids)], dtype=torch.long, device=device)
    centre = meta.normalization == "LN"
    with (
        torch.no_grad(),
        hooks(model, meta.n_layers, analysis.settings.processing, centre) as (cap, mask),
    ):
        mask[0] = torch.ones_like(x, dtype=torch.bool)
        model.base_model(input_ids=x)
        return {side_name(r.kind, r.side): r(cap).cpu() for r in readers}
