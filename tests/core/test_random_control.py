"""Controls: one kind's decomposition (the spectra's) without projecting any control."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import core.random_control as ctl
from core.analysis import analysis_from_weights, raw_weights
from core.cache import store
from core.model.loading import load_model
from core.settings import Settings
from core.svd.decompose import control_weights, decompose_control


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    m = load_model(Settings(model=str(checkpoints["llama"]), device="cpu"))
    return m, raw_weights(m)


def _build(model, cache: Path):
    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=cache)
    return analysis_from_weights(raw, m.tokenizer, s)


def test_one_kind_is_the_dense_svd_of_its_drawn_matrices(model, tmp_path, monkeypatch) -> None:
    a = _build(model, tmp_path)
    monkeypatch.setattr(ctl, "build_controls", lambda *_a, **_k: pytest.fail("projected all"))
    drawn = control_weights(a.weights, a.settings.seed)
    for kind in a.svd.kinds:
        d = ctl.control_decomposition(a, kind)
        assert d.control and ctl.control_decomposition_ready(a, kind)
        if kind == "embed":
            ref = decompose_control(a.weights, kind, a.settings.degeneracy_tol, a.settings.seed)
            assert torch.allclose(d.S, ref.S)
            continue
        for i, (layer, head) in enumerate(d.components):
            dense = torch.linalg.svdvals(drawn.matrix(kind, layer, head).double())
            want = dense[: d.rank].float()
            assert torch.allclose(d.S[i], want, rtol=1e-4, atol=1e-6 * float(want[0])), kind
    # Nothing was projected or written: the grid's control view builds those on its use.
    assert not ctl.controls_ready(a)
    assert not store.controls_on_disk(tmp_path, a.meta, "post")


def test_it_agrees_with_the_projected_controls_and_reads_them(model, tmp_path, monkeypatch):
    a = _build(model, tmp_path)
    alone = {k: ctl.control_decomposition(a, k) for k in a.svd.kinds}
    built = ctl.controls(a)  # the grid's control view: every kind, projected and written
    for kind, d in alone.items():
        assert torch.allclose(d.S, built[kind].decomposition.S, rtol=1e-5), kind
    # A new process with the controls part on disk reads it rather than drawing again.
    b = _build(model, tmp_path)
    assert b.from_cache and not ctl.controls_ready(b)
    monkeypatch.setattr(
        ctl, "build_control_decomposition", lambda *_a, **_k: pytest.fail("drawn again")
    )
    for kind in b.svd.kinds:
        got = ctl.control_decomposition(b, kind)
        assert torch.equal(got.S, built[kind].decomposition.S)


def test_every_public_name_of_core_resolves() -> None:
    """``core``'s lazy names point at modules that define them (a moved function, such
    as the controls out of core.analysis, would otherwise fail only on first use)."""
    import core

    for name in core.__all__:
        assert getattr(core, name) is not None, name
