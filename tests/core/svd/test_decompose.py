"""Decompositions and projections against a dense reference built from HF modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.analysis import open_analysis
from core.query import directions, kind_result
from core.settings import Settings
from core.svd.decompose import (
    degenerate_mask,
    factored_svd,
    gram_factored_svd,
)
from tests.core import reference as ref

K = 5


@pytest.fixture(scope="module")
def raw_analyses(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("cache")
    return {
        arch: open_analysis(
            Settings(model=str(path), processing="raw", device="cpu", cache_dir=cache)
        )
        for arch, path in checkpoints.items()
    }


def _check_component(a, kind: str, layer: int, head: int | None, W: torch.Tensor) -> None:
    S_ref, vecs = ref.token_side(kind, W)
    # The HF model's unembedding, read through the analysis's projection.
    W_U = ref.unembed_as_read(ref.unembed(a.model.hf_model), a.settings.projection)
    got = directions(a, kind, layer, head, n=a.svd.kinds[kind].decomposition.rank, k=K)
    assert len(got) == min(W.shape) if kind in ("mlp_in", "mlp_gate", "mlp_out") else a.meta.d_head
    for row in got:
        i = row.index
        assert row.singular_value == pytest.approx(float(S_ref[i]), rel=1e-4)
        if row.degenerate or i >= 12:
            continue
        ours = {
            frozenset(a.tokens.raw.index(t) for t, _, _ in row.top),
            frozenset(a.tokens.raw.index(t) for t, _, _ in row.bottom),
        }
        assert ours == ref.end_sets(vecs[:, i] @ W_U, K), (kind, layer, head, i)


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_ov_matches_dense_reference(raw_analyses, arch: str) -> None:
    a = raw_analyses[arch]
    for layer in range(a.meta.n_layers):
        for head in range(a.meta.n_heads):
            _check_component(a, "ov", layer, head, ref.ov_matrix(a.model.hf_model, layer, head))


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_mlp_matches_dense_reference(raw_analyses, arch: str) -> None:
    a = raw_analyses[arch]
    kinds = ["mlp_in", "mlp_out"] + (["mlp_gate"] if arch == "llama" else [])
    for kind in kinds:
        for layer in range(a.meta.n_layers):
            _check_component(a, kind, layer, None, ref.mlp_matrix(a.model.hf_model, kind, layer))


def test_ov_rank_is_d_head_and_gqa_heads_share_reads(raw_analyses) -> None:
    a = raw_analyses["llama"]
    d = a.svd.kinds["ov"].decomposition
    assert d.rank == a.meta.d_head
    assert a.meta.n_kv_heads == 2 and a.meta.n_heads == 4
    # Heads 0 and 1 share W_V, so the spans of their read directions coincide.
    U0, U1 = d.U[d.index(0, 0)].double(), d.U[d.index(0, 1)].double()
    proj = U0 @ (U0.T @ U1)
    assert torch.allclose(proj, U1, atol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_reconstruction_and_orthonormality(raw_analyses, arch: str) -> None:
    a = raw_analyses[arch]
    d = a.svd.kinds["ov"].decomposition
    for c, (layer, head) in enumerate(d.components):
        W = ref.ov_matrix(a.model.hf_model, layer, head)
        U, S, V = d.U[c].double(), d.S[c].double(), d.V[c].double()
        assert torch.allclose(U @ torch.diag(S) @ V.T, W, atol=1e-5 * W.abs().max())
        eye = torch.eye(d.rank, dtype=torch.float64)
        assert torch.allclose(U.T @ U, eye, atol=1e-4)
        assert torch.allclose(V.T @ V, eye, atol=1e-4)


def test_sign_rule_makes_strongest_token_positive(raw_analyses) -> None:
    a = raw_analyses["gpt2"]
    for row in directions(a, "ov", 1, 2, n=8, k=3):
        assert row.top[0][2] >= -row.bottom[0][2]


def test_control_exists_for_each_kind_with_matching_shape(raw_analyses) -> None:
    a = raw_analyses["llama"]
    for kind, res in a.svd.kinds.items():
        ctrl = kind_result(a, kind, control=True).decomposition
        assert ctrl.control and ctrl.rank == res.decomposition.rank
        real = res.decomposition.S
        # Same scale of entries, so the spectra are of the same order of magnitude.
        ratio = float(ctrl.S.sum() / real[: ctrl.S.shape[0]].sum())
        assert 0.2 < ratio < 5, (kind, ratio)


def test_degenerate_mask_flags_close_pairs_only() -> None:
    S = torch.tensor([[10.0, 5.0, 4.9999, 1.0]])
    assert degenerate_mask(S, 1e-3).tolist() == [[False, True, True, False]]


@pytest.mark.parametrize("filters", [("alpha",), ("ascii",), ("alpha", "ascii")])
def test_filtered_directions_match_a_masked_plain_projection(raw_analyses, filters) -> None:
    a = raw_analyses["gpt2"]
    d = a.svd.kinds["ov"].decomposition
    c = d.index(1, 0)
    mask = torch.ones(a.meta.d_vocab, dtype=torch.bool)
    for f in filters:
        mask &= a.tokens.alpha if f == "alpha" else a.tokens.ascii
    for row in directions(a, "ov", 1, 0, n=4, k=K, filters=filters):
        W_R = ref.unembed_as_read(a.weights.W_U, a.settings.projection)
        proj = d.directions[c, :, row.index].double() @ W_R
        hi = proj.masked_fill(~mask, float("-inf")).topk(K)
        lo = proj.masked_fill(~mask, float("inf")).topk(K, largest=False)
        assert [a.tokens.raw.index(t) for t, _, _ in row.top] == hi.indices.tolist()
        assert [a.tokens.raw.index(t) for t, _, _ in row.bottom] == lo.indices.tolist()
        assert all(mask[a.tokens.raw.index(t)] for t, _, _ in row.top + row.bottom)


@pytest.mark.parametrize("factor", [factored_svd, gram_factored_svd])
@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(4, 40),
    n=st.integers(4, 40),
    r=st.integers(1, 4),
    batch=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_factored_routes_equal_dense_svd(
    factor, m: int, n: int, r: int, batch: int, seed: int
) -> None:
    """Both routes (QR for the CPU, Gram Cholesky for a GPU) against a dense SVD."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(batch, m, r, generator=g, dtype=torch.float64)
    B = torch.randn(batch, r, n, generator=g, dtype=torch.float64)
    U, S, V = factor(A, B)
    dense = torch.linalg.svdvals(A @ B)[:, :r]
    assert torch.allclose(S, dense, rtol=1e-8, atol=1e-10)
    assert torch.allclose(U @ torch.diag_embed(S) @ V.transpose(-1, -2), A @ B, atol=1e-8)
    eye = torch.eye(r, dtype=A.dtype).expand(batch, r, r)
    assert torch.allclose(U.transpose(-1, -2) @ U, eye, atol=1e-8)
    assert torch.allclose(V.transpose(-1, -2) @ V, eye, atol=1e-8)


def test_gram_factored_svd_float32_heads_and_a_singular_head_match_dense() -> None:
    # GPT-2-like scale in float32, as a GPU precompute sees it; head 1 has a zero column,
    # so its Gram is singular and it takes the QR fallback.
    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 96, 16, generator=g) * 0.02
    B = torch.randn(4, 16, 96, generator=g) * 0.02
    A[1, :, 5] = 0
    U, S, V = gram_factored_svd(A, B)
    for h in range(4):
        ref = torch.linalg.svdvals(A[h].double() @ B[h].double())[:16]
        assert torch.allclose(S[h].double(), ref, rtol=1e-4, atol=1e-9), h
        rec = U[h] @ torch.diag(S[h]) @ V[h].T
        assert torch.allclose(rec, A[h] @ B[h], atol=1e-6), h
