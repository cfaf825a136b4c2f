"""Noise floors against dense random matrices drawn here (an independent reference)."""

from __future__ import annotations

import pytest
import torch

from core.model.noise import QuantNoise, chevet, noise_floor, random_top_singular
from core.model.weights import ModelMeta, ModelWeights, process


def test_random_top_singular_matches_a_dense_gaussian_matrix() -> None:
    g = torch.Generator().manual_seed(1)
    for m, n, sigma in ((400, 300, 0.1), (576, 64, 0.02)):
        E = sigma * torch.randn(m, n, generator=g, dtype=torch.float64)
        top = float(torch.linalg.matrix_norm(E, ord=2))
        assert top == pytest.approx(random_top_singular(sigma, m, n), rel=0.08)


def test_ov_floor_bounds_the_first_order_product_noise() -> None:
    """``E_V W_O + W_V E_O`` with iid noise: the Chevet sum bounds its top singular value
    on average and is not loose by more than a small factor."""
    g = torch.Generator().manual_seed(2)
    d, dh, sv, so = 96, 16, 0.03, 0.02
    W_V = torch.randn(d, dh, generator=g, dtype=torch.float64) * 0.2
    W_O = torch.randn(dh, d, generator=g, dtype=torch.float64) * 0.2
    bound = chevet(sv, d, W_O) + chevet(so, W_V, d)
    tops = []
    for _ in range(20):
        E_V = sv * torch.randn(d, dh, generator=g, dtype=torch.float64)
        E_O = so * torch.randn(dh, d, generator=g, dtype=torch.float64)
        tops.append(float(torch.linalg.matrix_norm(E_V @ W_O + W_V @ E_O, ord=2)))
    mean = sum(tops) / len(tops)
    assert mean <= bound
    assert mean >= bound / 3


def _gqa_weights(n_heads: int = 6, n_kv: int = 2, d: int = 32, dh: int = 8) -> ModelWeights:
    g = torch.Generator().manual_seed(3)
    L, V, F = 1, 50, 48

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    meta = ModelMeta(
        "gqa", "LlamaForCausalLM", L, n_heads, n_kv, d, dh, F, V, "RMS", True, False, "x"
    )
    W_V = r(L, n_kv, d, dh).repeat_interleave(n_heads // n_kv, dim=1)
    return ModelWeights(
        meta=meta,
        processing="raw",
        W_Q=r(L, n_heads, d, dh),
        W_K=r(L, n_heads, d, dh),
        W_V=W_V,
        W_O=r(L, n_heads, dh, d),
        W_in=r(L, d, F),
        W_gate=r(L, d, F),
        W_out=r(L, F, d),
        W_E=r(V, d),
        W_U=r(d, V),
        ln1_w=1 + 0.1 * r(L, d),
        ln2_w=1 + 0.1 * r(L, d),
        lnf_w=torch.ones(d),
    )


def test_noise_floor_uses_the_heads_kv_group() -> None:
    """Under GQA, query heads 0..2 share key/value head 0: their W_V noise is its; W_O
    noise is each query head's own."""
    raw = _gqa_weights()
    m = raw.meta
    group = m.n_heads // m.n_kv_heads
    tensors = {
        "model.layers.0.self_attn.v_proj.weight": {
            "sigma": 0.01,
            "head_sigma": [0.01 * (i + 1) for i in range(m.n_kv_heads)],
        },
        "model.layers.0.self_attn.o_proj.weight": {
            "sigma": 0.01,
            "head_sigma": [0.001 * (i + 1) for i in range(m.n_heads)],
        },
    }
    noise = QuantNoise("test", m.n_heads, m.n_kv_heads, tensors)
    post = process(raw, "post")
    for h in range(m.n_heads):
        want = chevet(0.01 * (h // group + 1), m.d_model, raw.W_O[0, h])
        want += chevet(0.001 * (h + 1), raw.W_V[0, h], m.d_model)
        assert noise_floor(noise, raw, raw, "ov", 0, h) == pytest.approx(want)
        # post folds the RMSNorm scale into W_V's rows: its noise is scaled with it.
        want_post = chevet(0.01 * (h // group + 1), raw.ln1_w[0], raw.W_O[0, h])
        want_post += chevet(0.001 * (h + 1), post.W_V[0, h], m.d_model)
        assert noise_floor(noise, raw, post, "ov", 0, h) == pytest.approx(want_post)
