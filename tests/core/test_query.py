"""The fast path (Gram-eigh MLP SVDs, fused chunked top/bottom-k, batched factored OV)
against plain references: dense ``torch.linalg.svd`` and one matmul + ``topk``."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import GPT2Config

from core.cache.build import build_controls, build_svd
from core.model.random import random_model
from core.model.weights import process
from core.settings import Settings
from core.svd import project
from core.svd.control import decompose_control
from core.svd.decompose import TOKEN_SIDE, token_side_svd
from core.svd.project import project_topk
from tests.core.reference import unembed_as_read

K = 7
N = 12


@pytest.fixture(scope="module", params=["raw", "post"])
def small(request):
    # A small random GPT-2-shaped model: 2 layers, d_model 128, 4 heads, vocab 2000.
    cfg = GPT2Config(n_layer=2, n_embd=128, n_head=4, vocab_size=2000)
    model = random_model(cfg, "fast-path", seed=3)
    settings = Settings(device="cpu", k=K, n_project=N, kinds=("ov", "mlp_in", "mlp_out", "embed"))
    weights = process(model.raw, request.param)
    svd = build_svd(weights, settings)
    return weights, replace(svd, controls=build_controls(weights, settings))


def _dense(kind: str, W: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    return S, (U if TOKEN_SIDE[kind] == "in" else Vh.T)


def _matrix(weights, kind: str, layer: int, head: int | None) -> torch.Tensor:
    return weights.matrix(kind, layer, head)


@pytest.mark.parametrize("kind", ["ov", "mlp_in", "mlp_out", "embed"])
def test_singular_values_and_token_sets_match_dense_reference(small, kind: str) -> None:
    weights, svd = small
    res = svd.kinds[kind]
    d = res.decomposition
    for c, (layer, head) in enumerate(d.components):
        S_ref, vecs = _dense(kind, _matrix(weights, kind, layer, head))
        r = d.rank
        assert torch.allclose(d.S[c].double(), S_ref[:r], rtol=1e-4, atol=1e-6 * float(S_ref[0]))
        # The default projection's unembedding, written out (tests/core/reference.py).
        W_U = unembed_as_read(weights.W_U, Settings().projection)
        for i in range(min(N, r)):
            if d.degenerate[c, i]:
                continue
            # Same direction up to sign as the dense reference.
            cos = float(vecs[:, i] @ d.directions[c, :, i].double())
            assert abs(cos) > 1 - 1e-4, (kind, layer, head, i, cos)
            # Cached ends equal a plain matmul + topk of the (re-signed) direction.
            p = d.directions[c, :, i].double() @ W_U
            row = c * res.n_projected + i
            assert set(res.tops.top_idx[row].tolist()) == set(p.topk(K).indices.tolist())
            assert set(res.tops.bottom_idx[row].tolist()) == set(
                p.topk(K, largest=False).indices.tolist()
            )
            ref = vecs[:, i] @ W_U
            assert {
                frozenset(res.tops.top_idx[row].tolist()),
                frozenset(res.tops.bottom_idx[row].tolist()),
            } == {
                frozenset(ref.topk(K).indices.tolist()),
                frozenset((-ref).topk(K).indices.tolist()),
            }


def test_controls_are_built_and_projected(small) -> None:
    _, svd = small
    for kind, res in svd.controls.items():
        assert res.decomposition.control
        assert res.tops.top_idx.shape[0] == len(res.decomposition.components) * res.n_projected
        assert torch.isfinite(res.decomposition.S).all(), kind


@pytest.mark.parametrize("side", ["in", "out"])
def test_token_side_svd_equals_dense(side: str) -> None:
    g = torch.Generator().manual_seed(0)
    W = (
        torch.randn(3, 48, 200, generator=g)
        if side == "in"
        else torch.randn(3, 200, 48, generator=g)
    )
    # A spread spectrum (condition number ~1e3) makes the Gram route work for its accuracy.
    scale = torch.logspace(0, -3, 48)
    W = W * (scale[None, :, None] if side == "in" else scale[None, None, :])
    vecs, S = token_side_svd(W, side)
    U, S_ref, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    ref = U if side == "in" else Vh.transpose(-1, -2)
    assert torch.allclose(S.double(), S_ref, rtol=1e-4, atol=0)
    cos = (vecs.double() * ref).sum(dim=1).abs()
    assert (cos[:, :40] > 1 - 1e-3).all()


def test_token_side_svd_long_side_falls_back_to_dense() -> None:
    W = torch.randn(2, 30, 10)
    vecs, S = token_side_svd(W, "in")
    assert vecs.shape == (2, 30, 10) and S.shape == (2, 10)
    assert torch.allclose(S, torch.linalg.svdvals(W), rtol=1e-4)


@pytest.mark.parametrize(
    ("n", "V", "k", "chunk", "masked"),
    [
        (40, 2000, 20, 16384, False),
        (40, 2000, 5, 300, True),
        (3, 130, 20, 64, False),
        (2500, 1100, 4, 512, True),
        (5, 10, 20, 4, False),
    ],
)
@pytest.mark.parametrize("block", [1 << 24, 4096])
@pytest.mark.parametrize("openblas_min", [1 << 30, 0])
def test_project_topk_equals_plain_matmul_topk(
    monkeypatch, n: int, V: int, k: int, chunk: int, masked: bool, block: int, openblas_min: int
):
    # A small block budget keeps the vocabulary chunks and row blocks in play (the real
    # budget widens a block to the whole vocabulary when there are few directions); a zero
    # threshold sends these small products through OpenBLAS as big ones go.
    monkeypatch.setattr(project, "_BLOCK_ELEMS", block)
    monkeypatch.setattr(project, "_OPENBLAS_MIN", openblas_min)
    g = torch.Generator().manual_seed(n + V)
    dirs = torch.randn(n, 32, generator=g)
    W_U = torch.randn(32, V, generator=g)
    mask = (torch.rand(V, generator=g) > 0.3) if masked else None
    t = project_topk(dirs, W_U, k, chunk, mask)
    P = dirs @ W_U
    kk = min(k, V if mask is None else int(mask.sum()))
    hi = P if mask is None else P.masked_fill(~mask, float("-inf"))
    lo = P if mask is None else P.masked_fill(~mask, float("inf"))
    tv, ti = hi.topk(kk, dim=1)
    bv, bi = lo.topk(kk, dim=1, largest=False)
    assert torch.equal(t.top_idx, ti) and torch.equal(t.bottom_idx, bi)
    assert torch.allclose(t.top_val, tv, atol=1e-5) and torch.allclose(t.bottom_val, bv, atol=1e-5)


def test_controls_drawn_once_equal_decompose_control(small) -> None:
    weights, svd = small
    for kind, res in svd.controls.items():
        ref = decompose_control(weights, kind, 1e-3, 0)
        got = res.decomposition
        assert got.components == ref.components and got.control
        assert torch.allclose(got.S, ref.S)
        # Same directions up to the sign the projection fixes.
        dots = (got.directions * ref.directions).sum(dim=1).abs()
        assert torch.allclose(dots, torch.ones_like(dots), atol=1e-4), kind
