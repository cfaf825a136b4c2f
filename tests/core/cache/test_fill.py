"""Two-step build (first directions, then the background fill) against the one-step
build: same signs, same tokens, same values; queries answer the same during the fill."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import GPT2Config

from core.analysis import analysis_from_weights, open_analysis
from core.cache import store
from core.cache.build import FIRST_DIRECTIONS, build_first, build_svd, fill_kind, is_filled
from core.model.random import random_model
from core.model.weights import process
from core.query import directions
from core.search.engine import build_index, search
from core.settings import Settings
from core.svd.project import read_unembed


@pytest.fixture(scope="module")
def model():
    cfg = GPT2Config(n_layer=2, n_embd=96, n_head=4, vocab_size=1500)
    return random_model(cfg, "fill", seed=5)


def _name(i: int) -> str:
    # Letters for multiples of three (the alpha filter keeps them), digits otherwise.
    if i % 3:
        return f"n{i}"
    out = ""
    while True:
        out, i = chr(97 + i % 26) + out, i // 26
        if not i:
            return out


class _Tok:
    """Token ``i`` is the string ``_name(i)``."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def convert_ids_to_tokens(self, ids):
        return [_name(i) for i in ids]

    def decode(self, ids):
        return "".join(_name(i) for i in ids)


@pytest.mark.parametrize("n_project", [None, 9])
def test_first_then_fill_equals_one_step(model, n_project) -> None:
    s = Settings(device="cpu", k=6, n_project=n_project)
    w = process(model.raw, "post")
    full, first = build_svd(w, s), build_first(w, s)
    for kind, ref in full.kinds.items():
        part = first.kinds[kind]
        assert part.n_projected == min(FIRST_DIRECTIONS, part.decomposition.rank)
        assert not is_filled(part, s)
        got = fill_kind(part, read_unembed(w.W_U, s.projection), s)
        assert is_filled(got, s) and got.n_projected == ref.n_projected
        assert torch.equal(got.decomposition.directions, ref.decomposition.directions)
        assert torch.equal(got.tops.top_idx, ref.tops.top_idx)
        assert torch.equal(got.tops.bottom_idx, ref.tops.bottom_idx)
        assert torch.allclose(got.tops.top_val, ref.tops.top_val, atol=1e-5)
        assert torch.allclose(got.tops.bottom_val, ref.tops.bottom_val, atol=1e-5)


def _same(a, b) -> None:
    assert [(d.index, d.singular_value) for d in a] == [(d.index, d.singular_value) for d in b]
    for x, y in zip(a, b):
        assert [t for t, _, _ in x.top] == [t for t, _, _ in y.top]
        assert [t for t, _, _ in x.bottom] == [t for t, _, _ in y.bottom]
        vx = torch.tensor([v for *_, v in x.top + x.bottom])
        vy = torch.tensor([v for *_, v in y.top + y.bottom])
        assert torch.allclose(vx, vy, atol=1e-5)


QUERIES = [
    ("ov", 1, 2, 12, 5, ()),
    ("mlp_in", 0, None, 20, 4, ()),
    ("mlp_out", 1, None, 8, 5, ("alpha",)),
    ("embed", 0, None, 6, 3, ()),
]


def test_background_fill_answers_as_the_filled_cache(model, tmp_path: Path) -> None:
    s = Settings(device="cpu", k=6, cache_dir=tmp_path)
    tok = _Tok(model.raw.meta.d_vocab)
    one = analysis_from_weights(model.raw, tok, s, use_cache=False)
    bg = analysis_from_weights(model.raw, tok, s, background=True)
    assert bg.fill is not None
    # During the fill (or after: the thread may be quick) the answers are the same.
    during = [directions(bg, *q) for q in QUERIES]
    assert bg.fill.wait(120) and bg.fill.error is None and not bg.filling
    for q, d in zip(QUERIES, during):
        ref = directions(one, *q)
        _same(d, ref)
        _same(directions(bg, *q), ref)
    # The entry was written, whole: a later open reads it.
    again = analysis_from_weights(model.raw, tok, s)
    assert again.from_cache
    for kind, res in one.svd.kinds.items():
        assert torch.equal(again.svd.kinds[kind].tops.top_idx, res.tops.top_idx)
    # Search on the filled analysis is the one-step build's search.
    q = "n5, n7"
    h1 = search(build_index(one), q, threshold=0.0, top=10).hits
    h2 = search(build_index(bg), q, threshold=0.0, top=10).hits
    assert [(h.matrix, h.layer, h.head, h.index, h.sign) for h in h1] == [
        (h.matrix, h.layer, h.head, h.index, h.sign) for h in h2
    ]


def test_search_works_before_the_fill(model, tmp_path: Path) -> None:
    s = Settings(device="cpu", k=12, cache_dir=tmp_path)
    w = process(model.raw, "post")
    first = build_first(w, s)
    from core.analysis import Analysis
    from core.svd.project import token_table

    a = Analysis.of(s, model.raw, w, first, token_table(_Tok(w.meta.d_vocab), w.meta.d_vocab))
    index = build_index(a)
    # Past the first directions the thresholds are the Gaussian value, not NaN.
    assert torch.isfinite(index.tau_top).all() and torch.isfinite(index.tau_bottom).all()
    assert search(index, "n5, n7", threshold=0.0, top=5).hits


def test_open_analysis_in_the_background_writes_the_checkpoint_part(checkpoints, tmp_path) -> None:
    s = Settings(model=str(checkpoints["gpt2"]), device="cpu", cache_dir=tmp_path)
    a = open_analysis(s, background=True)
    assert a.fill is not None and a.fill.wait(120) and a.fill.error is None
    entry = store.entry_dir(tmp_path, a.meta, "post")
    assert (entry / store.CHECKPOINT_MANIFEST).is_file()
    cached = open_analysis(s)
    assert cached.from_cache and not cached.source.loaded


def test_first_pass_answers_as_the_filled_cache(model) -> None:
    # No thread: the first-pass entry itself, so the on-demand sign rule is what is tested.
    from core.analysis import Analysis
    from core.svd.project import token_table

    s = Settings(device="cpu", k=6)
    w = process(model.raw, "post")
    table = token_table(_Tok(w.meta.d_vocab), w.meta.d_vocab)
    part = Analysis.of(s, model.raw, w, build_first(w, s), table)
    full = Analysis.of(s, model.raw, w, build_svd(w, s), table)
    for q in QUERIES:
        _same(directions(part, *q), directions(full, *q))
