"""Weight view and the ``post`` processing, checked against HF's own norm modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.model.loading import load_model
from core.model.source import raw_weights
from core.model.weights import process
from core.settings import Settings
from tests.core import reference as ref


@pytest.fixture(scope="module")
def loaded(checkpoints: dict[str, Path]):
    return {a: load_model(Settings(model=str(p), device="cpu")) for a, p in checkpoints.items()}


def _normalised(x: torch.Tensor, arch: str) -> torch.Tensor:
    if arch == "llama":
        return x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    x = x - x.mean(-1, keepdim=True)
    return x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt()


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_raw_view_matches_hf_parameters(loaded, arch: str) -> None:
    m = loaded[arch]
    w = raw_weights(m)
    for layer in range(w.meta.n_layers):
        for head in range(w.meta.n_heads):
            ov = (w.W_V[layer, head] @ w.W_O[layer, head]).double()
            assert torch.allclose(ov, ref.ov_matrix(m.hf_model, layer, head), atol=1e-6)
        assert torch.allclose(w.W_out[layer].double(), ref.mlp_matrix(m.hf_model, "mlp_out", layer))
    assert torch.allclose(w.W_U.double(), ref.unembed(m.hf_model))
    assert w.meta.gated == (arch == "llama")
    assert w.meta.normalization == ("RMS" if arch == "llama" else "LN")


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_post_folding_reproduces_the_norm(loaded, arch: str) -> None:
    """normalised(x) @ W_post == norm(x) @ W_raw minus the norm's bias term."""
    m = loaded[arch]
    raw = raw_weights(m)
    post = process(raw, "post")
    x = torch.randn(7, raw.meta.d_model) * 3 + 1
    xn = _normalised(x, arch)
    for layer in range(raw.meta.n_layers):
        ln1, ln2 = (ref.module(m.hf_model, f"ln{k}", layer) for k in (1, 2))
        bias1 = getattr(ln1, "bias", None)
        bias2 = getattr(ln2, "bias", None)
        with torch.no_grad():
            h1, h2 = ln1(x), ln2(x)
        for name, h, bias in (("W_V", h1, bias1), ("W_Q", h1, bias1), ("W_K", h1, bias1)):
            Wr = getattr(raw, name)[layer, 1]
            want = h @ Wr - (0 if bias is None else bias @ Wr)
            assert torch.allclose(xn @ getattr(post, name)[layer, 1], want, atol=1e-4), name
        for name in ("W_in", "W_gate"):
            Wr = getattr(raw, name)
            if Wr is None:
                continue
            want = h2 @ Wr[layer] - (0 if bias2 is None else bias2 @ Wr[layer])
            assert torch.allclose(xn @ getattr(post, name)[layer], want, atol=1e-4), name
        # Writing matrices are unchanged.
        assert torch.equal(post.W_O, raw.W_O) and torch.equal(post.W_out, raw.W_out)
    lnf = ref.final_norm(m.hf_model)
    with torch.no_grad():
        hf = lnf(x)
    bias = getattr(lnf, "bias", None)
    want = hf @ raw.W_U - (0 if bias is None else bias @ raw.W_U)
    assert torch.allclose(xn @ post.W_U, want, atol=1e-4), "W_U"
    assert raw.processing == "raw" and post.processing == "post"


def test_weights_hash_tracks_values(loaded) -> None:
    raw = raw_weights(loaded["gpt2"])
    again = raw_weights(loaded["gpt2"])
    assert raw.meta.weights_hash == again.meta.weights_hash
    from core.model.weights import hash_tensors

    changed = raw.W_in.clone()
    changed[0, 0, 0] += 1e-3
    assert hash_tensors({"W_in": changed}) != hash_tensors({"W_in": raw.W_in})


def test_weights_hash_is_the_documented_digest() -> None:
    """The digest is blake2b-128 over each name (sorted) with its shape, then its values as
    float32 bytes in C order, whatever the tensor's layout or dtype: a cache entry is filed
    under it, so reading the bytes in place must not change it. Reference: plain hashlib."""
    import hashlib

    from core.model.weights import hash_tensors

    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=g)
    tensors = {
        "W_U": base.T,  # not contiguous
        "W_E": torch.randn(4, 3, generator=g).to(torch.bfloat16),
        "W_in": torch.randn(2, 3, 4, generator=g),
        "W_gate": None,
    }
    ref = hashlib.blake2b(digest_size=16)
    for key in ("W_E", "W_U", "W_in"):
        t = tensors[key]
        ref.update(f"{key}:{tuple(t.shape)}".encode())
        ref.update(t.float().numpy().copy(order="C").tobytes())
    assert hash_tensors(tensors) == ref.hexdigest()


def test_shape_validation_rejects_wrong_shapes(loaded) -> None:
    raw = raw_weights(loaded["gpt2"])
    # TypeError: the runtime shape check (jaxtyping, on under pytest) fires first.
    with pytest.raises((ValueError, TypeError), match="W_O"):
        raw.replace(W_O=raw.W_O[:, :, :-1])


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_post_view_is_the_textbook_fold(loaded, arch: str) -> None:
    """Each folded matrix equals diag(w) W read from the HF modules, centred over
    d_model for LayerNorm (which the test above cannot see: normalised inputs have zero
    mean)."""
    m = loaded[arch]
    post = process(raw_weights(m), "post")
    hf = m.hf_model
    for layer in range(post.meta.n_layers):
        for head in range(post.meta.n_heads):
            ov = (post.W_V[layer, head] @ post.W_O[layer, head]).double()
            want = ref.component(hf, "ov", layer, head, "post")
            assert torch.allclose(ov, want, atol=1e-6), (layer, head)
        for kind, W in (("mlp_in", post.W_in), ("mlp_gate", post.W_gate)):
            if W is not None:
                want = ref.component(hf, kind, layer, None, "post")
                assert torch.allclose(W[layer].double(), want, atol=1e-6), kind
    lnf = ref.final_norm(hf).weight.detach().double()
    want = ref.fold(ref.unembed(hf), lnf, ref.centres(hf))
    assert torch.allclose(post.W_U.double(), want, atol=1e-6)
