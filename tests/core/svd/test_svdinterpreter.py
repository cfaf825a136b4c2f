"""Agreement with TransformerLens's own SVDInterpreter where the conventions coincide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformer_lens.SVDInterpreter import SVDInterpreter

from core.analysis import open_analysis
from core.model.loading import load_model
from core.settings import Settings

N = 6


def _interpreter(settings: Settings) -> SVDInterpreter:
    """TransformerLens's own interpreter over its bridge (the analysis loads the model
    without one)."""
    return SVDInterpreter(load_model(settings, bridge=True).bridge)


def _assert_same_up_to_sign(ours: torch.Tensor, theirs: torch.Tensor, degenerate) -> None:
    # ours, theirs: [d_vocab, n] projections of the first n directions.
    for i in range(ours.shape[1]):
        if degenerate[i]:
            continue
        a, b = ours[:, i].double(), theirs[:, i].double()
        cos = (a @ b) / (a.norm() * b.norm())
        assert abs(float(cos)) > 1 - 1e-4, (i, float(cos))


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_ov_and_w_out_agree_raw(checkpoints: dict[str, Path], tmp_path: Path, arch: str) -> None:
    s = Settings(model=str(checkpoints[arch]), processing="raw", device="cpu", cache_dir=tmp_path)
    a = open_analysis(s)
    interp = _interpreter(s)
    W_U = a.weights.W_U
    ov = a.svd.kinds["ov"].decomposition
    c = ov.index(1, 2)
    theirs = interp.get_singular_vectors("OV", layer_index=1, head_index=2, num_vectors=N)[:, 0, :]
    _assert_same_up_to_sign(W_U.T @ ov.V[c, :, :N], theirs, ov.degenerate[c])
    out = a.svd.kinds["mlp_out"].decomposition
    theirs = interp.get_singular_vectors("w_out", layer_index=0, num_vectors=N)[:, 0, :]
    _assert_same_up_to_sign(W_U.T @ out.V[0, :, :N], theirs, out.degenerate[0])


def test_w_in_agrees_with_scale_folded(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    # SVDInterpreter folds ln2's scale into W_in but does not centre; on an RMSNorm model
    # that is exactly our `post` processing.
    s = Settings(
        model=str(checkpoints["llama"]), processing="post", device="cpu", cache_dir=tmp_path
    )
    a = open_analysis(s)
    interp = _interpreter(s)
    W_U = a.raw.W_U  # SVDInterpreter projects through the stored W_U
    d = a.svd.kinds["mlp_in"].decomposition
    theirs = interp.get_singular_vectors("w_in", layer_index=1, num_vectors=N)[:, 0, :]
    _assert_same_up_to_sign(W_U.T @ d.U[1, :, :N], theirs, d.degenerate[1])
