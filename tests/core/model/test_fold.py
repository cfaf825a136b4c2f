"""The fold's inverse: an update realised on a stored matrix folds to the update
wanted, for LayerNorm (centred) and RMSNorm; writing matrices are never folded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.model.fold import fold_like, unfold_rows
from core.model.random import make_model


@pytest.mark.parametrize("normalization", ["LN", "RMS"])
def test_unfolded_update_folds_back_exactly(normalization):
    raw = make_model("tiny").raw
    raw = raw.replace(meta=dataclasses.replace(raw.meta, normalization=normalization))
    d, m = raw.meta.d_model, raw.meta.d_mlp
    ln2 = raw.ln2_w.clone()
    ln2[1, 5] = 0.0  # a coordinate the model never reads
    raw = raw.replace(ln2_w=ln2)
    g = torch.Generator().manual_seed(1)
    u = torch.randn(d, generator=g, dtype=torch.float64)
    u[5] = 0.0  # no reading direction uses an unread coordinate
    if normalization == "LN":  # zero mean, as a left singular vector of a centred matrix
        keep = torch.arange(d) != 5
        u[keep] -= u[keep].mean()
    r = torch.randn(m, generator=g, dtype=torch.float64)
    left = unfold_rows(raw, "W_in", 1, u)
    assert left[5] == 0.0
    # By hand: the stored update's fold, diag(w) l r^T, centred under LayerNorm.
    w = ln2[1].double()
    folded = w[:, None] * torch.outer(left, r)
    if normalization == "LN":
        folded = folded - folded.mean(dim=0, keepdim=True)
    assert torch.allclose(folded, torch.outer(u, r), atol=1e-12)
    assert torch.allclose(fold_like(raw, "W_in", torch.outer(left, r), 1), folded, atol=1e-12)


def test_writing_matrices_are_not_folded():
    raw = make_model("tiny").raw
    v = torch.randn(raw.meta.d_mlp, dtype=torch.float64)
    D = torch.randn(raw.meta.d_mlp, raw.meta.d_model, dtype=torch.float64)
    assert torch.equal(unfold_rows(raw, "W_out", 0, v), v)
    assert torch.equal(fold_like(raw, "W_out", D, 0), D)
