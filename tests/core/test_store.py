"""Cache: round trip, corruption and staleness are detected and rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core import store
from core.analysis import analysis_from_weights, raw_weights, settings_key
from core.errors import CacheError
from core.loading import load_model
from core.settings import Settings


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    m = load_model(Settings(model=str(checkpoints["llama"]), device="cpu"))
    return m, raw_weights(m)


def _build(model, cache: Path, **kw):
    m, raw = model
    s = Settings(model="tiny-llama", device="cpu", cache_dir=cache, **kw)
    return analysis_from_weights(raw, m.tokenizer, s)


def test_round_trip_is_exact(model, tmp_path: Path) -> None:
    first = _build(model, tmp_path)
    second = _build(model, tmp_path)
    assert not first.from_cache and second.from_cache
    for kind, res in first.svd.kinds.items():
        other = second.svd.kinds[kind]
        d1, d2 = res.decomposition, other.decomposition
        assert d1.components == d2.components
        assert torch.equal(d1.S, d2.S) and torch.equal(d1.directions, d2.directions)
        assert torch.equal(res.tops.top_idx, other.tops.top_idx)
        assert torch.equal(res.tops.bottom_val, other.tops.bottom_val)
        assert torch.equal(d1.degenerate, d2.degenerate)
    assert set(second.svd.controls) == set(first.svd.controls)
    files = {p.suffix for p in store.entry_dir(tmp_path, first.meta, "post").iterdir()}
    assert files == {".safetensors", ".json"}


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "meta"])
def test_damaged_entry_is_detected_and_rebuilt(model, tmp_path: Path, damage: str) -> None:
    a = _build(model, tmp_path)
    entry = store.entry_dir(tmp_path, a.meta, "post")
    target = entry / "ov.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    elif damage == "flip":
        data = bytearray(target.read_bytes())
        data[-5] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "delete":
        target.unlink()
    else:
        (entry / "meta.json").write_text("{ not json")
    with pytest.raises(CacheError):
        store.load(tmp_path, a.meta, "post", settings_key(a.settings))
    rebuilt = _build(model, tmp_path)
    assert not rebuilt.from_cache
    assert torch.equal(rebuilt.svd.kinds["ov"].decomposition.S, a.svd.kinds["ov"].decomposition.S)
    assert _build(model, tmp_path).from_cache


def test_stale_settings_or_format_rebuild(model, tmp_path: Path) -> None:
    a = _build(model, tmp_path, k=10)
    assert _build(model, tmp_path, k=10).from_cache
    assert not _build(model, tmp_path, k=12).from_cache  # other settings: stale
    meta_path = store.entry_dir(tmp_path, a.meta, "post") / "meta.json"
    info = json.loads(meta_path.read_text())
    info["format_version"] = -1
    meta_path.write_text(json.dumps(info))
    assert not _build(model, tmp_path, k=12).from_cache


def test_other_weights_do_not_share_an_entry(model, tmp_path: Path) -> None:
    m, raw = model
    a = _build(model, tmp_path)
    from core.weights import hash_tensors

    W_out = raw.W_out.clone()
    W_out[0] *= 2
    changed = raw.replace(W_out=W_out)
    changed = changed.replace(
        meta=changed.meta.__class__(
            **{
                **changed.meta.to_json(),
                "weights_hash": hash_tensors({"W_out": W_out, "W_in": raw.W_in}),
            }
        )
    )
    b = analysis_from_weights(changed, m.tokenizer, a.settings)
    assert not b.from_cache
    assert store.entry_dir(tmp_path, a.meta, "post") != store.entry_dir(tmp_path, b.meta, "post")
    assert len(store.list_entries(tmp_path)) == 2


def test_no_pickle_in_the_code() -> None:
    root = Path(__file__).resolve().parents[2]
    for py in list((root / "core").rglob("*.py")) + list((root / "dashboard").rglob("*.py")):
        text = py.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, py
