"""The search index's statistics part: written once the entry is settled, read back by
later builds, and dropped or ignored whenever the entry it came from changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.analysis import analysis_from_weights
from core.cache import parts as cache_parts
from core.cache import store
from core.search.embed import build_embedder
from core.search.index import build_index
from core.search.score import logit_std
from core.settings import Settings

_FIELDS = (
    "logit_std",
    "tau_top",
    "tau_bottom",
    "singular_value",
    "layer",
    "head",
    "index",
    "kind_of",
    "component",
    "degenerate",
)


@pytest.fixture(scope="module")
def model(checkpoints: dict[str, Path]):
    from core.model.loading import load_model
    from core.model.source import raw_weights

    m = load_model(Settings(model=str(checkpoints["llama"]), device="cpu"))
    return m, raw_weights(m)


def _open(model, cache: Path):
    m, raw = model
    return analysis_from_weights(
        raw, m.tokenizer, Settings(model="tiny-llama", device="cpu", cache_dir=cache)
    )


def _parts(a) -> list[str]:
    entry = store.entry_dir(a.settings.cache_dir, a.meta, a.settings.processing)
    return sorted(p.name for p in entry.glob(f"{cache_parts.PART_PREFIX}*.json"))


def test_second_build_reads_the_statistics_and_equals_a_fresh_one(model, tmp_path, monkeypatch):
    a = _open(model, tmp_path)
    first = build_index(a, ("ov", "mlp_out"))
    assert _parts(a) == ["part-search-ov-mlp_out.json"]
    b = _open(model, tmp_path)
    import core.search.index as index_mod

    # A read, not a recomputation: the operators' build would fail here.
    monkeypatch.setattr(index_mod, "build_embedder", lambda *a, **k: 1 / 0)
    second = build_index(b, ("ov", "mlp_out"))
    for name in _FIELDS:
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert torch.equal(first.vectors, second.vectors)
    assert first.spans == second.spans and first.kinds == second.kinds
    for name in ("mean_u", "pinv_op", "ridge_op", "gc_root"):
        assert torch.equal(getattr(first.embedder, name), getattr(second.embedder, name))


def test_statistics_equal_a_plain_reference(model, tmp_path) -> None:
    a = _open(model, tmp_path)
    index = build_index(a, ("ov",))
    d = a.svd.kinds["ov"].decomposition
    C, dm, r = d.directions.shape
    vec = d.directions.permute(0, 2, 1).reshape(C * r, dm).double()
    vec = vec / vec.norm(dim=1, keepdim=True)
    logits = vec @ a.W_U.double()  # [n, V], dense
    assert torch.allclose(index.logit_std.double(), logits.std(dim=1, correction=0), rtol=1e-4)
    assert torch.allclose(index.vectors.float(), vec.float(), atol=1e-2)  # bfloat16 rows
    emb = build_embedder(a.W_U, a.W_E)
    ref_std = logit_std(vec.float(), emb.gc_root, emb.d_vocab)
    assert torch.allclose(index.logit_std, ref_std, rtol=1e-5)


def test_other_kinds_or_ridge_are_their_own_part(model, tmp_path) -> None:
    a = _open(model, tmp_path)
    build_index(a, ("ov",))
    build_index(a, ("ov",), ridge=0.5)
    build_index(a, ("mlp_in", "ov"))  # kinds in index order whatever the request's order
    assert _parts(a) == ["part-search-ov-mlp_in.json", "part-search-ov.json"]


def test_a_changed_entry_is_not_read(model, tmp_path) -> None:
    a = _open(model, tmp_path)
    build_index(a, ("ov",))
    import core.search.index as index_mod
    from core.search import stored

    ridge, bf16 = index_mod.DEFAULT_RIDGE, torch.bfloat16
    assert stored.load(a, ("ov",), ridge, bf16) is not None
    assert stored.load(a, ("ov",), ridge * 2, bf16) is None  # other operators
    assert stored.load(a, ("ov",), ridge, torch.float16) is None  # other precision
    # A part written when fewer directions were projected (a fill in progress) is ignored.
    key = stored.settings_key(a.settings)
    extra, tensors = cache_parts.load_part(a.settings.cache_dir, a.meta, "post", key, "search-ov")
    extra["kinds"]["ov"][1] -= 1
    cache_parts.save_part(a.settings.cache_dir, a.meta, "post", key, "search-ov", tensors, extra)
    assert stored.load(a, ("ov",), ridge, bf16) is None
    # ... and so is one of an older format.
    extra["kinds"]["ov"][1] += 1
    cache_parts.save_part(
        a.settings.cache_dir, a.meta, "post", key, "search-ov", tensors, {**extra, "version": 1}
    )
    assert stored.load(a, ("ov",), ridge, bf16) is None
    # Rewriting the entry drops every derived part.
    store.save(a.svd, a.settings.cache_dir, stored.settings_key(a.settings))
    assert _parts(a) == []
