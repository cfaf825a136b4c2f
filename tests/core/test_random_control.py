"""Controls: one kind's decomposition (the spectra's) without projecting any control."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import core.random_control as ctl
from core.analysis import analysis_from_weights, open_analysis
from core.cache import store
from core.model.loading import load_model
from core.model.source import raw_weights
from core.settings import Settings
from core.svd.control import (
    control_scales,
    control_weights,
    decompose_control,
    draw_control,
    is_undrawn,
)


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


def _plain_control(weights, seed: int) -> dict[str, torch.Tensor]:
    """The documented draw, written out: one generator, the matrices in order, head 0 of
    the attention ones, each i.i.d. normal times its own matrix's standard deviation."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in ("W_Q", "W_K", "W_V", "W_O", "W_in", "W_gate", "W_out"):
        W = getattr(weights, name)
        if W is None:
            continue
        if name in ("W_Q", "W_K", "W_V", "W_O"):
            W = W[:, :1]
            std = W.reshape(W.shape[0], 1, -1).std(dim=-1)[..., None, None]
        else:
            std = W.reshape(W.shape[0], -1).std(dim=-1)[:, None, None]
        out[name] = torch.randn(W.shape, generator=g, dtype=W.dtype) * std
    return out


def test_drawing_from_the_scales_is_the_documented_draw(model) -> None:
    _, raw = model
    want = _plain_control(raw, 3)
    drawn = draw_control(raw.meta, raw.processing, control_scales(raw), raw.W_E, raw.W_U, 3)
    assert drawn.meta.n_heads == 1 and torch.equal(drawn.W_E, raw.W_E)
    for name, ref in want.items():
        assert torch.equal(getattr(drawn, name), ref), name


@pytest.mark.parametrize("kind", ["ov", "qk", "mlp_in", "mlp_gate", "mlp_out", "embed"])
def test_one_kind_draws_only_its_matrices_with_the_full_draws_values(model, kind) -> None:
    """The spectra of one kind draw what it reads: those matrices equal the documented
    full draw's, and every other one is an unusable placeholder that costs no memory."""
    _, raw = model
    want = _plain_control(raw, 3)
    scales = control_scales(raw)
    drawn = draw_control(raw.meta, raw.processing, scales, raw.W_E, raw.W_U, 3, (kind,))
    reads = {"ov": {"W_V", "W_O"}, "qk": {"W_Q", "W_K"}}.get(kind, set())
    reads |= {"mlp_in": {"W_in"}, "mlp_gate": {"W_gate"}, "mlp_out": {"W_out"}}.get(kind, set())
    for name, ref in want.items():
        got = getattr(drawn, name)
        if name in reads:
            assert torch.equal(got, ref), name
        else:
            assert is_undrawn(got) and got.shape == ref.shape and got.isnan().all(), name
    if kind != "embed":
        dense = torch.linalg.svdvals(
            control_weights(raw, 3).matrix(kind, 1, 0 if kind in ("ov", "qk") else None)
        )
        one = decompose_control(raw, kind, 1e-3, 3)
        i = one.components.index((1, 0 if kind in ("ov", "qk") else None))
        assert torch.allclose(one.S[i], dense[: one.rank], rtol=1e-4, atol=1e-5)


def test_a_cache_hit_draws_the_spectra_control_without_the_model(checkpoints, tmp_path):
    s = Settings(model=str(checkpoints["llama"]), device="cpu", cache_dir=tmp_path)
    built = open_analysis(s)  # loads the model, writes the entry and its checkpoint part
    hit = open_analysis(s)
    assert hit.from_cache and not hit.source.loaded and hit.control_scales is not None
    for kind in hit.svd.kinds:
        got = ctl.control_decomposition(hit, kind)
        want = ctl.control_decomposition(built, kind)  # drawn from the loaded weights
        assert torch.allclose(got.S, want.S, rtol=1e-5), kind
    assert not hit.source.loaded


def test_every_public_name_of_core_resolves() -> None:
    """``core``'s lazy names point at modules that define them (a moved function, such
    as the controls out of core.analysis, would otherwise fail only on first use)."""
    import core

    for name in core.__all__:
        assert getattr(core, name) is not None, name


def test_the_control_view_projects_on_demand_what_the_projected_controls_hold(
    model, tmp_path
) -> None:
    """The grid's control view reads one kind drawn and decomposed, projecting what it
    shows; its tokens, values and signs equal those of the fully projected controls."""
    from core.query import directions

    lazy = _build(model, tmp_path / "a")
    full = _build(model, tmp_path / "b")
    ctl.controls(full)
    for kind in lazy.svd.kinds:
        head = 0 if kind in ("ov", "qk") else None
        for layer in range(1 if kind == "embed" else lazy.meta.n_layers):
            got = directions(lazy, kind, layer, head, n=6, k=5, control=True)
            want = directions(full, kind, layer, head, n=6, k=5, control=True)
            for g, w in zip(got, want, strict=True):
                for end in ("top", "bottom"):
                    gs, ws = getattr(g, end), getattr(w, end)
                    assert [t[0] for t in gs] == [t[0] for t in ws], (kind, layer, end)
                    assert [t[2] for t in gs] == pytest.approx([t[2] for t in ws], rel=1e-4)
    assert not ctl.controls_ready(lazy)


def test_a_drawn_kind_is_written_and_read_by_the_next_process(model, tmp_path, monkeypatch):
    """A new server process reads a kind's control decomposition that an earlier one drew
    (no second draw); a damaged copy is drawn again, and a session that does not persist
    writes nothing."""
    first = _build(model, tmp_path)
    drawn = {k: ctl.control_decomposition(first, k) for k in first.svd.kinds}
    assert not store.controls_on_disk(tmp_path, first.meta, "post")  # nothing projected
    real = ctl.build_control_decomposition
    monkeypatch.setattr(
        ctl, "build_control_decomposition", lambda *_a, **_k: pytest.fail("drawn again")
    )
    second = _build(model, tmp_path)
    assert second.from_cache
    for kind, want in drawn.items():
        got = ctl.control_decomposition(second, kind)
        assert got.control and got.components == want.components, kind
        for name in ("S", "U", "V"):
            a, b = getattr(got, name), getattr(want, name)
            assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), (kind, name)
        assert torch.equal(got.degenerate, want.degenerate)

    entry = store.entry_dir(tmp_path, first.meta, "post")
    damaged = entry / "part-control-ov.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    calls: list[str] = []
    monkeypatch.setattr(
        ctl, "build_control_decomposition", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    third = _build(model, tmp_path)
    assert torch.equal(ctl.control_decomposition(third, "ov").S, drawn["ov"].S)
    assert calls == ["ov"]

    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=tmp_path / "ro")
    quiet_one = replace(analysis_from_weights(raw, m.tokenizer, s), persist=False)
    ctl.control_decomposition(quiet_one, "mlp_in")
    assert not list((tmp_path / "ro").rglob("part-control-*"))


def test_moving_one_kinds_control_to_a_device_leaves_the_undrawn_matrices_unallocated(model):
    """On a GPU the drawn matrices move and the placeholders stay as they are (moving a
    zero-stride view would allocate the whole matrix); the meta device stands in."""
    from core.cache.build import _to_device

    _, raw = model
    moved = _to_device(control_weights(raw, 3, ("ov",)), "meta")
    for name in ("W_V", "W_O", "W_E", "W_U"):
        assert getattr(moved, name).device.type == "meta", name
    for name in ("W_Q", "W_K", "W_in", "W_gate", "W_out"):
        t = getattr(moved, name)
        assert is_undrawn(t) and t.device.type == "cpu", name
