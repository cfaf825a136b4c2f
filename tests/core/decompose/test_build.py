"""Builds cached as entry parts: read back equal, rebuilt when an option or seed changes;
and their directions through the query layer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import core.decompose.build as build_mod
from core.analysis import analysis_from_weights, settings_key
from core.decompose import DecomposeOptions, components
from core.decompose.rows import token_frequencies
from core.errors import SpecError
from core.query import method_directions
from core.settings import Settings


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    from core.model.loading import load_model
    from core.model.source import raw_weights

    m = load_model(Settings(model=str(checkpoints["gpt2"]), device="cpu"))
    return m, raw_weights(m)


def _open(model, cache: Path):
    m, raw = model
    s = Settings(model="tiny-gpt2", device="cpu", cache_dir=cache)
    return analysis_from_weights(raw, m.tokenizer, s)


FAST = DecomposeOptions(n_components=32, n_iter=3)


def test_second_build_reads_the_cache_and_a_new_seed_rebuilds(model, tmp_path, monkeypatch):
    a = _open(model, tmp_path)
    key = settings_key(a.settings)
    first = components(a, key, FAST, "mlp_out", 1)
    calls = []
    real = build_mod.fit_components
    monkeypatch.setattr(
        build_mod, "fit_components", lambda *x, **k: calls.append(1) or real(*x, **k)
    )
    again = components(a, key, FAST, "mlp_out", 1)
    assert calls == []
    assert torch.equal(again.directions, first.directions)
    assert again.fvu == first.fvu and again.n_fit == first.n_fit
    other = components(a, key, FAST.replace(seed=1), "mlp_out", 1)
    assert calls == [1]
    assert not torch.equal(other.directions, first.directions)


@pytest.mark.parametrize(
    ("method", "kind"),
    [("dictionary", "embed"), ("dictionary", "ov"), ("nmf", "mlp_out"), ("ica", "mlp_in")],
)
def test_method_directions_read_like_svd_directions(model, tmp_path, method, kind) -> None:
    a = _open(model, tmp_path)
    opts = DecomposeOptions(n_components=8, n_iter=3)
    dirs = method_directions(a, method, kind, 0, n=4, k=5, options=opts)
    assert [d.index for d in dirs] == [0, 1, 2, 3]
    strengths = [d.singular_value for d in dirs]
    assert strengths == sorted(strengths, reverse=True)
    for d in dirs:
        assert len(d.top) == 5 and len(d.bottom) == 5
        assert d.top[0][2] >= d.top[-1][2] and d.bottom[0][2] <= d.bottom[-1][2]
    if method != "nmf":
        # The top tokens are the direction's largest projections through W_U.
        c = build_mod.components(a, settings_key(a.settings), opts.replace(method=method), kind, 0)
        proj = c.directions[0] @ a.W_U
        assert {t for t, _, _ in dirs[0].top} == {a.tokens.raw[i] for i in proj.topk(5).indices}
        assert proj.max() >= -proj.min()  # the sign rule: the stronger end on top


def test_unreadable_matrix_is_one_sentence(model, tmp_path) -> None:
    a = _open(model, tmp_path)
    with pytest.raises(SpecError, match="nmf reads"):
        method_directions(a, "nmf", "embed", 0)
    with pytest.raises(SpecError, match="out of range"):
        method_directions(a, "dictionary", "mlp_out", 9)


def test_token_frequencies_count_the_text(model, tmp_path) -> None:
    m, _ = model
    text = tmp_path / "a.txt"
    text.write_text("fire fire fire water")
    w = token_frequencies(m.tokenizer, [text], 320)
    ids = m.tokenizer.encode("fire fire fire water")
    counts = torch.ones(320)
    for i in ids:
        counts[i] += 1
    assert torch.allclose(w, counts / counts.sum())
