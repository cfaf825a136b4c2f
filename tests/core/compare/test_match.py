"""Direction matching across models: identity with itself, invariance to a rotation of
a head's value/output bases, a planted change found alone; principal angles against
scipy's; the series through checkpoints; tokenizer mismatch refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import scipy.linalg
import torch

from core.analysis import Analysis, analysis_from_weights, open_analysis
from core.compare import match_component, series
from core.compare.match import principal_cosines, token_images
from core.errors import SpecError
from core.model.weights import ModelWeights
from core.settings import Settings
from tests.core.reference import unembed_as_read

L, H = 1, 2


@pytest.fixture(scope="module")
def base(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    s = Settings(
        model=str(checkpoints["gpt2"]),
        device="cpu",
        processing="raw",
        k=5,
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    return open_analysis(s)


def _variant(base: Analysis, raw: ModelWeights) -> Analysis:
    return analysis_from_weights(raw, base.tokenizer, base.settings, use_cache=False)


def _rotated(raw: ModelWeights) -> ModelWeights:
    """Every head's value/output bases turned by a random orthogonal R: W_V R, R^T W_O."""
    g = torch.Generator().manual_seed(1)
    L_, H_, dh = raw.W_V.shape[0], raw.W_V.shape[1], raw.W_V.shape[3]
    R, _ = torch.linalg.qr(torch.randn(L_, H_, dh, dh, generator=g))
    return raw.replace(W_V=raw.W_V @ R, W_O=R.transpose(-1, -2) @ raw.W_O)


def _planted(raw: ModelWeights, j: int) -> ModelWeights:
    """Head (L, H)'s OV with its j-th written direction v_j swapped for a unit vector
    orthogonal to every written direction; singular values and read directions kept.
    """
    W_V, W_O = raw.W_V[L, H].double(), raw.W_O[L, H].double()
    U, S, Vh = torch.linalg.svd(W_V @ W_O)
    r = W_V.shape[1]
    V = Vh[:r].T  # [d_model, r]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(V.shape[0], generator=g, dtype=torch.float64)
    x = x - V @ (V.T @ x)
    x = x / x.norm()
    delta = S[j] * torch.outer(torch.linalg.pinv(W_V) @ U[:, j], x - V[:, j])
    W_O2 = raw.W_O.clone()
    W_O2[L, H] = (W_O + delta).float()
    return raw.replace(W_O=W_O2)


def test_self_match_is_the_identity_with_cosine_one(base: Analysis) -> None:
    m = match_component(base, base, "ov", L, H)
    r = base.meta.d_head
    assert m.pairs.tolist() == [[i, i] for i in range(r)]
    assert torch.allclose(m.matched, torch.ones(r), atol=1e-5)
    assert m.sign.tolist() == [1] * r and m.unmatched() == []
    assert torch.allclose(m.principal, torch.ones_like(m.principal), atol=1e-5)


def test_rotated_value_output_bases_match_with_cosine_one(base: Analysis) -> None:
    rot = _variant(base, _rotated(base.raw))
    # The rotation really changed the stored matrices, not the circuit.
    assert not torch.allclose(rot.raw.W_O, base.raw.W_O, atol=1e-3)
    for layer, head in [(L, H), (0, 0)]:
        m = match_component(base, rot, "ov", layer, head)
        assert m.pairs[:, 1].tolist() == list(range(base.meta.d_head))
        assert torch.allclose(m.matched, torch.ones_like(m.matched), atol=1e-4)
        assert m.unmatched() == []


@pytest.mark.parametrize("j", [0, 5])
def test_planted_change_shows_only_that_direction(base: Analysis, j: int) -> None:
    planted = _variant(base, _planted(base.raw, j))
    m = match_component(base, planted, "ov", L, H)
    assert m.unmatched() == [j]
    others = [i for i in range(len(m.matched)) if i != j]
    assert torch.allclose(m.matched[others], torch.ones(len(others)), atol=1e-4)
    # The subspace of the top directions lost exactly one dimension when j is among them.
    top = match_component(base, planted, "ov", L, H, k=8).principal
    assert (top < 0.9).sum() == (1 if j < 8 else 0)
    # Another head is untouched.
    assert match_component(base, planted, "ov", 0, 1).unmatched() == []


def test_token_images_against_a_dense_svd(base: Analysis) -> None:
    img = token_images(base, "ov", L, H)
    W = base.raw.W_V[L, H].double() @ base.raw.W_O[L, H].double()
    _, _, Vh = torch.linalg.svd(W)
    ref = Vh[: img.shape[0]] @ unembed_as_read(base.raw.W_U, base.settings.projection)
    ref = ref / ref.norm(dim=1, keepdim=True)
    assert torch.allclose(
        (img.double() * ref).sum(1).abs(), torch.ones(len(img), dtype=torch.float64), atol=1e-4
    )


def test_principal_cosines_agree_with_scipy() -> None:
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(4, 50, generator=g), torch.randn(4, 50, generator=g)
    b[0] = a[1] * 2.0 - a[2]  # one shared direction: one angle of 0
    ours = principal_cosines(a, b).double()
    ref = (
        torch.tensor(scipy.linalg.subspace_angles(a.T.double().numpy(), b.T.double().numpy()))
        .cos()
        .sort(descending=True)
        .values
    )
    assert torch.allclose(ours, ref, atol=1e-5)
    assert abs(float(ours[0]) - 1.0) < 1e-5


def test_tokenizer_mismatch_is_refused_in_one_sentence(base: Analysis) -> None:
    other_tokens = dataclasses.replace(base.tokens, raw=("x",) + base.tokens.raw[1:])
    other = dataclasses.replace(base, tokens=other_tokens)
    with pytest.raises(SpecError) as e:
        match_component(base, other, "ov", L, H)
    msg = str(e.value)
    assert "do not share a tokenizer" in msg and msg.count(". ") == 0 and msg.endswith(".")


def test_series_follows_the_planted_direction(base: Analysis) -> None:
    j = 3
    planted = _variant(base, _planted(base.raw, j))
    t = series([planted, base, base], "ov", L, H, n_tokens=3)
    assert t.steps.shape == (2, base.meta.d_head)
    # Direction j of the final checkpoint is absent at the first and present after.
    assert t.appears() == [0 if i != j else 1 for i in range(base.meta.d_head)]
    assert float(t.best[0, j]) < 0.9 and torch.allclose(
        t.best[1:], torch.ones(2, base.meta.d_head), atol=1e-4
    )
    assert t.best_index[-1].tolist() == list(range(base.meta.d_head))
    assert len(t.tokens[0][0]) == 3
    # Negated value/output weights: the cache's sign rule gives the same directions back,
    # so every partner has sign +1 and the same tokens.
    flipped = _variant(base, base.raw.replace(W_O=-base.raw.W_O))
    f = series([flipped, base], "ov", L, H, n_tokens=3)
    assert (f.sign == 1).all() and f.tokens[0] == f.tokens[1]
    assert torch.allclose(t.spectra[0], t.spectra[1], atol=1e-4)  # the plant keeps S
    with pytest.raises(SpecError):
        series([base], "ov", L, H)
