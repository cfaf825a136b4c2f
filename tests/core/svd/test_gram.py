"""The Gram eigendecomposition routes of the MLP matrices, against dense SVDs."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import GPT2Config

import core.cache.build as build
import core.svd.gram as gram
from core.cache.build import build_svd
from core.model.random import random_model
from core.model.weights import process
from core.settings import Settings
from core.svd.gram import HostGrams, batched_gram_eighs


def _batch(side: str, n: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    W = torch.randn(n, 12, 30, generator=g) * 0.02
    return W if side == "in" else W.transpose(-1, -2).contiguous()


def _assert_dense(W: torch.Tensor, side: str, ev: torch.Tensor, Q: torch.Tensor) -> None:
    """``(ev, Q)`` (ascending) are the Gram solve of ``W``: the squared singular values
    and, up to sign, the singular vectors of ``side`` from ``torch.linalg.svd``."""
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    assert torch.allclose(ev.flip(0).clamp_min(0).sqrt(), S, rtol=1e-9)
    ref = U if side == "in" else Vh.T
    dots = (Q.flip(1) * ref).sum(0).abs()
    assert torch.allclose(dots, torch.ones_like(dots), atol=1e-9)


@pytest.mark.parametrize("side", ["in", "out"])
def test_batched_gram_eighs_give_the_dense_svd(side: str) -> None:
    # The GPU route of the MLP decompositions, run here on the CPU: 5 matrices in
    # groups of 2 (a ragged last group), against torch.linalg.svd of each matrix.
    W = _batch(side)
    for b, (ev, Q) in enumerate(batched_gram_eighs(W, side, group=2)):
        _assert_dense(W[b], side, ev, Q)


@pytest.mark.parametrize("side", ["in", "out"])
def test_host_grams_give_the_dense_svd_in_matrix_order(side: str) -> None:
    W, other = _batch(side), _batch(side, 3) * 3
    with HostGrams({"a": (W, side), "b": (other, side)}, workers=3) as grams:
        got_b = grams.take("b")
        got_a = grams.take("a")
        assert grams.take("a") is None and grams.take("c") is None
    assert got_a is not None and got_b is not None
    assert len(got_a) == 5 and len(got_b) == 3
    for b, (ev, Q) in enumerate(got_a):
        _assert_dense(W[b], side, ev, Q)
    for b, (ev, Q) in enumerate(got_b):
        _assert_dense(other[b], side, ev, Q)


@pytest.fixture(scope="module")
def weights():
    cfg = GPT2Config(n_layer=3, n_embd=48, n_head=4, vocab_size=700)
    return process(random_model(cfg, "gram", seed=3).raw, "post")


def test_the_host_route_builds_the_dense_decompositions(weights) -> None:
    # Every MLP matrix and the embedding against torch.linalg.svd, and the whole entry
    # (orientation and token tables) equal to the device route's.
    kinds = ("ov", "mlp_in", "mlp_out", "embed")
    s = Settings(device="cpu", k=5, kinds=kinds)
    host = build_svd(weights, s.replace(gram_eigh="host"))
    device = build_svd(weights, s)
    mats = {"mlp_in": weights.W_in, "mlp_out": weights.W_out, "embed": weights.W_E[None]}
    for kind, W in mats.items():
        d = host.kinds[kind].decomposition
        for b in range(W.shape[0]):
            U, S, Vh = torch.linalg.svd(W[b].double(), full_matrices=False)
            ref = U if kind == "mlp_in" else Vh.T
            assert torch.allclose(d.S[b].double(), S, rtol=1e-5)
            cos = (d.directions[b].double() * ref).sum(0).abs()
            assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5), (kind, b)
    for kind in kinds:
        a, b = host.kinds[kind], device.kinds[kind]
        assert torch.allclose(a.decomposition.directions, b.decomposition.directions, atol=1e-6)
        assert torch.equal(a.tops.top_idx, b.tops.top_idx)
        assert torch.equal(a.tops.bottom_idx, b.tops.bottom_idx)


def test_the_host_solves_run_while_the_heads_are_decomposed(weights, monkeypatch) -> None:
    # The OV decomposition waits until a host solve has started: were the solves
    # started only when their kind is reached, it would wait in vain (and fail).
    started = threading.Event()
    real_solve, real_decompose = gram.host_gram_eigh, build.decompose_kind

    def solve(W, side):
        started.set()
        return real_solve(W, side)

    def decompose(w, kind, tol, eighs=None):
        if kind == "ov":
            assert started.wait(timeout=60), "no host solve started before the OV heads"
        return real_decompose(w, kind, tol, eighs)

    monkeypatch.setattr(gram, "host_gram_eigh", solve)
    monkeypatch.setattr(build, "decompose_kind", decompose)
    s = Settings(device="cpu", k=5, kinds=("ov", "mlp_in", "mlp_out"), gram_eigh="host")
    svd = build_svd(weights, s)
    assert set(svd.kinds) == {"ov", "mlp_in", "mlp_out"}


def test_a_failed_build_cancels_the_solves_nobody_takes(monkeypatch) -> None:
    # The first solve holds the only worker until the block has failed; the rest are
    # cancelled, not run, and the failure is the caller's.
    release, calls = threading.Event(), []

    def solve(W, side):
        calls.append(W)
        release.wait(timeout=60)
        return gram.gram_eigh(W, side)

    monkeypatch.setattr(gram, "host_gram_eigh", solve)
    block = HostGrams({"mlp_in": (_batch("in", 6), "in")}, workers=1)
    with pytest.raises(RuntimeError, match="the heads failed"), block:
        threading.Timer(0.2, release.set).start()
        raise RuntimeError("the heads failed")
    assert len(calls) == 1
