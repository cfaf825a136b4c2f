"""The spectra's noise floors of a quantized checkpoint come from the cache entry's
checkpoint part on a cache hit, equal to those computed from the loaded weights."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.analysis import open_analysis, settings_key
from core.cache.checkpoint import find_by_fingerprint, save_checkpoint
from core.model.fingerprint import fingerprint
from core.model.noise import NOISE_FILE, noise_floor, read_noise
from core.settings import Settings
from core.svd.control import control_scales
from dashboard.builders.spectra import noise_floors


def _quantized_copy(src: Path, dst: Path, meta) -> Path:
    """``src`` with a made-up noise table, as a GGUF build writes one."""
    shutil.copytree(src, dst)
    tensors = {}
    for layer in range(meta.n_layers):
        for i, name in enumerate(("q", "k", "v", "o")):
            kv = name in ("k", "v")
            n = meta.n_kv_heads if kv else meta.n_heads
            tensors[f"model.layers.{layer}.self_attn.{name}_proj.weight"] = {
                "sigma": 0.01,
                "head_sigma": [0.001 * (layer + 1) * (h + 1 + i) for h in range(n)],
            }
        for name in ("up", "gate", "down"):
            tensors[f"model.layers.{layer}.mlp.{name}_proj.weight"] = {"sigma": 0.002 * (layer + 1)}
    tensors["model.embed_tokens.weight"] = {"sigma": 0.003}
    table = {"source": "test", "n_heads": meta.n_heads, "n_kv_heads": meta.n_kv_heads}
    (dst / NOISE_FILE).write_text(json.dumps({**table, "tensors": tensors}))
    return dst


@pytest.fixture
def quantized(checkpoints, tmp_path):
    """The plain tiny llama's analysis, and the settings of its quantized copy."""
    plain = open_analysis(
        Settings(model=str(checkpoints["llama"]), device="cpu", cache_dir=tmp_path / "c0")
    )
    model = _quantized_copy(checkpoints["llama"], tmp_path / "llama-q", plain.meta)
    return plain, Settings(model=str(model), device="cpu", cache_dir=tmp_path / "cache")


def _floors_match(a, built, model: Path) -> None:
    """``a``'s floors, each against the floor computed from ``built``'s loaded weights."""
    noise = read_noise(model)
    assert noise is not None
    for kind, res in built.svd.kinds.items():
        comps = list(res.decomposition.components)
        got = noise_floors(a, kind, comps)
        for layer, head in comps:
            want = noise_floor(noise, built.raw, built.weights, kind, layer, head)
            assert got[(layer, head)] == pytest.approx(want, rel=1e-6), (kind, layer, head)


def test_a_cache_hit_shows_the_noise_floors_without_the_model(quantized) -> None:
    plain, s = quantized
    built = open_analysis(s)
    hit = open_analysis(s)
    assert hit.from_cache and not hit.source.loaded and hit.noise_floors is not None
    _floors_match(hit, built, Path(s.model))
    assert not hit.source.loaded
    # A checkpoint that was not quantized keeps none.
    assert open_analysis(plain.settings).noise_floors is None


def test_an_old_checkpoint_part_is_completed_once_the_model_loads(quantized, monkeypatch):
    """A part written before the controls' scales and the floors were kept gets them
    when the model is loaded for any reason, so the next process needs no model."""
    _, s = quantized
    built = open_analysis(s)
    key = settings_key(s)
    hit = find_by_fingerprint(s.cache_dir, s.model, s.processing, key, fingerprint(Path(s.model)))
    assert hit is not None
    svd, part = hit
    assert part.control_scales is not None and part.noise_floors is not None
    old = replace(part, control_scales=None, noise_floors=None)
    save_checkpoint(s.cache_dir, svd.meta, s.processing, key, old)

    stale = open_analysis(s)
    assert stale.control_scales is None and stale.noise_floors is None
    assert not stale.source.loaded
    stale.source.get()  # an edit or a forward pass loads the model
    again = open_analysis(s)
    assert not again.source.loaded and again.control_scales and again.noise_floors
    want = control_scales(built.weights)
    assert again.control_scales.keys() == want.keys()
    for name, std in want.items():
        assert torch.equal(again.control_scales[name], std), name
    _floors_match(again, built, Path(s.model))
    assert not again.source.loaded
    # A complete part is left alone: loading the model computes no floor again.
    import core.analysis

    monkeypatch.setattr(core.analysis, "kind_floors", lambda *_a, **_k: pytest.fail("floors"))
    again.source.get()
