"""Semantic search: query parsing, embeddings, planted directions, ranking, errors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.analysis import Analysis, analysis_from_weights
from core.errors import SpecError
from core.model.random import random_weights
from core.model.weights import process
from core.query import directions
from core.search.embed import METHODS, build_embedder, parse_query
from core.search.engine import SearchIndex, build_index, search
from core.settings import Settings
from tests.core.reference import unembed_as_read
from tests.tiny_models import make_tokenizer

KINDS = ("ov", "qk", "mlp_in", "mlp_out", "embed")


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(1000)


def _indicator(tok, words: list[str], d_vocab: int) -> torch.Tensor:
    t = torch.zeros(d_vocab)
    for w in words:
        (i,) = tok.encode(w, add_special_tokens=False)
        t[i] = 1.0
    return t


def _plant(raw, tok, tmp: Path) -> tuple[Analysis, dict[str, torch.Tensor]]:
    """Write token-space patterns into W_O (a head) and W_out (an MLP layer)."""
    V = raw.meta.d_vocab
    W_U = process(raw, "post").W_U
    pinv = torch.linalg.pinv(W_U)  # [V, d]
    fire = _indicator(tok, [" fire", " flames"], V) @ pinv
    water = _indicator(tok, [" water", " river", " fish", " swim"], V) @ pinv
    fire, water = fire / fire.norm(), water / water.norm()
    W_O = raw.W_O.clone()
    W_O[1, 2, 0] = 40 * fire
    W_out = raw.W_out.clone()
    # Water dominates this direction, so its top end is water and fire sits at the bottom.
    mixed = 1.6 * water - fire
    W_out[0, 5] = 40 * mixed / mixed.norm()
    planted = raw.replace(W_O=W_O, W_out=W_out)
    a = analysis_from_weights(
        planted,
        tok,
        # The patterns are planted through pinv of the raw W_U, so they are read raw; the
        # references below read through a.settings.projection whatever it is.
        Settings(model="planted", cache_dir=tmp, kinds=KINDS, device="cpu", projection="raw"),
    )
    return a, {"fire": fire, "mixed": mixed / mixed.norm()}


@pytest.fixture(scope="module")
def planted(tokenizer, tmp_path_factory) -> tuple[Analysis, SearchIndex, dict]:
    raw = random_weights(2, 4, 64, 256, len(tokenizer), seed=1)
    a, vecs = _plant(raw, tokenizer, tmp_path_factory.mktemp("cache"))
    return a, build_index(a), vecs


# --------------------------------------------------------------------------- parsing


def test_parse_uses_both_space_variants_when_distinct(tokenizer) -> None:
    vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    q = parse_query("the , fire", tokenizer, vocab, len(tokenizer))
    assert q.concepts == ("the", "fire")
    assert q.concept_tokens[0] == ("the", " the")
    # "fire" without a space is three pieces; the single-token " fire" is used alone.
    assert q.concept_tokens[1] == (" fire",)
    w = dict(zip(q.ids.tolist(), q.weights.tolist()))
    assert w[tokenizer.encode(" fire")[0]] == pytest.approx(1.0)
    assert w[tokenizer.encode("the")[0]] == pytest.approx(0.5)
    assert float(q.weights.sum()) == pytest.approx(2.0)


def test_parse_multi_token_word_is_matched_by_all_its_tokens(tokenizer) -> None:
    vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    plain = tokenizer.encode("photosynthesis")
    spaced = tokenizer.encode(" photosynthesis")
    assert len(plain) > 1 and len(spaced) > 1
    q = parse_query(
        "photosynthesis", tokenizer, vocab, len(tokenizer), words=frozenset({"photosynthesis"})
    )
    shortest = min(len(plain), len(spaced))
    want = [v for v in (plain, spaced) if len(v) == shortest]
    # Every token of each shortest spelling, not just the first.
    assert q.ids.tolist() == [i for v in want for i in v]
    assert q.spellings[0] == tuple(tuple(vocab[i] for i in v) for v in want)
    assert q.pieces is not None and q.spelling_groups.tolist() == [0] * len(want)
    assert float(q.weights.sum()) == pytest.approx(1.0)
    # Pieces of one spelling share its weight evenly.
    assert q.weights.tolist() == pytest.approx([1.0 / (len(want) * shortest)] * len(q.ids))


def test_nonsense_is_refused_in_one_sentence(tokenizer) -> None:
    vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    assert len(tokenizer.encode(" qqqzzzxxyy")) > 1
    with pytest.raises(SpecError, match=r"^'qqqzzzxxyy' is not a known word for this model") as e:
        parse_query("fire, qqqzzzxxyy", tokenizer, vocab, len(tokenizer), words=frozenset({"fire"}))
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0


def test_colons_and_semicolons_separate_concepts(tokenizer) -> None:
    vocab = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    q = parse_query("numbers: one, two; three", tokenizer, vocab, len(tokenizer))
    assert q.concepts == ("numbers", "one", "two", "three")


@pytest.mark.parametrize("query", ["", "   ", " , ,, "])
def test_empty_query_is_one_sentence(planted, query: str) -> None:
    _, index, _ = planted
    with pytest.raises(SpecError, match=r"^The query is empty; .*\.$") as exc:
        search(index, query)
    assert "\n" not in str(exc.value)


class _UnkTokenizer:
    """A WordPiece-like tokenizer: unknown words become the unknown token."""

    unk_token_id = 0
    unk_token = "[UNK]"
    words = ("[UNK]", "fire", "water")

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        w = text.strip()
        return [self.words.index(w) if w in self.words else 0]


def test_unknown_concept_is_one_sentence() -> None:
    tok = _UnkTokenizer()
    vocab = list(tok.words)
    assert parse_query("fire", tok, vocab, 3).concept_tokens == (("fire",),)
    with pytest.raises(SpecError, match=r"^'qzx' is not a known word for this model"):
        parse_query("fire, qzx", tok, vocab, 3)


def test_without_tokenizer_exact_vocabulary_lookup() -> None:
    vocab = ["a", " fire", "fire", " ice"]
    q = parse_query("fire, ice", None, vocab, 4)
    assert q.concept_tokens == (("fire", " fire"), (" ice",))
    with pytest.raises(SpecError, match="'lava' is not a known word"):
        parse_query("lava", None, vocab, 4)


def test_bad_method_threshold_top_and_kind(planted) -> None:
    _, index, _ = planted
    with pytest.raises(
        SpecError, match=r"^Unknown embedding 'nope'; use one of token, ridge, pinv, embed\.$"
    ):
        search(index, "fire", method="nope")
    with pytest.raises(SpecError, match="threshold must be between 0 and 1"):
        search(index, "fire", threshold=1.5)
    with pytest.raises(SpecError, match="top must be at least 1"):
        search(index, "fire", top=0)
    with pytest.raises(SpecError, match="Unknown matrix 'ovv'"):
        search(index, "fire", kinds=["ovv"])
    with pytest.raises(SpecError, match="mlp_gate is not searchable"):
        search(index, "fire", kinds=["mlp_gate"])


# --------------------------------------------------------------------------- embeddings


def test_embeddings_match_dense_references(planted) -> None:
    a, index, _ = planted
    # Search reads directions through the analysis's projection, as the grid does.
    W_U = unembed_as_read(a.weights.W_U, a.settings.projection)
    W_E = a.weights.W_E.double()
    V = W_U.shape[1]
    ids = torch.tensor([3, 17, 40])
    w = torch.tensor([0.5, 0.25, 1.0])
    t = torch.zeros(V, dtype=torch.float64)
    t[ids] = w.double()
    e = index.embedder
    ref_pinv = t @ torch.linalg.pinv(W_U, rtol=1e-5)
    torch.testing.assert_close(e.embed(ids, w, "pinv")[0].double(), ref_pinv, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(e.embed(ids, w, "embed")[0].double(), t @ W_E, rtol=1e-5, atol=1e-7)
    # Ridge: centred least squares with a penalty, solved densely in token space.
    C = torch.eye(V, dtype=torch.float64) - 1.0 / V
    W_Uc = W_U @ C
    Gc = W_Uc @ W_Uc.T
    lam = e.ridge * torch.linalg.eigvalsh(Gc).clamp_min(0).mean()
    d = W_U.shape[0]
    ref_ridge = torch.linalg.solve(Gc + lam * torch.eye(d, dtype=torch.float64), W_Uc @ (C @ t))
    torch.testing.assert_close(
        e.embed(ids, w, "ridge")[0].double(), ref_ridge, rtol=1e-4, atol=1e-6
    )


def test_batched_embedding_equals_single(planted) -> None:
    _, index, _ = planted
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    w = torch.tensor([[1.0, 0.5, 0.0], [0.2, 0.2, 0.2]])
    for m in METHODS:
        batch = index.embedder.embed(ids, w, m)
        for b in range(2):
            torch.testing.assert_close(batch[b], index.embedder.embed(ids[b], w[b], m)[0])


def test_embedder_rejects_mismatched_shapes() -> None:
    # TypeError: the runtime shape check (jaxtyping, on under pytest) fires first.
    with pytest.raises((ValueError, TypeError), match="W_E"):
        build_embedder(torch.randn(8, 20), torch.randn(21, 8))


# --------------------------------------------------------------------------- index


def test_index_rows_are_unit_directions(planted) -> None:
    a, index, _ = planted
    assert set(index.kinds) == set(KINDS)
    n = sum(
        r.decomposition.directions.shape[0] * r.decomposition.rank for r in a.svd.kinds.values()
    )
    assert len(index) == n
    torch.testing.assert_close(
        index.vectors.float().norm(dim=1), torch.ones(len(index)), rtol=2e-3, atol=2e-3
    )
    d = a.svd.kinds["ov"].decomposition
    row = index.row("ov", 1, 3, 5)
    ref = d.directions[d.index(1, 3), :, 5]
    torch.testing.assert_close(index.vectors[row].float(), ref / ref.norm(), rtol=0, atol=2e-3)
    assert int(index.layer[row]) == 1 and int(index.head[row]) == 3 and int(index.index[row]) == 5
    row = index.row("mlp_out", 0, None, 7)
    assert int(index.head[row]) == -1 and index.kinds[int(index.kind_of[row])] == "mlp_out"


# --------------------------------------------------------------------------- planted directions


@pytest.mark.parametrize("method", ["token", "ridge", "pinv"])
def test_planted_head_direction_is_found_first(planted, method: str) -> None:
    _, index, _ = planted
    res = search(index, "fire, flames", method=method)
    best = res.hits[0]
    assert (best.matrix, best.layer, best.head, best.index) == ("ov", 1, 2, 0)
    assert best.cosine > 0.9
    assert best.sign == "positive" and best.end == "top"
    assert {" fire", " flames"} <= {t for t, _, _ in best.tokens[:2]}


def test_planted_antipodal_mlp_direction(planted) -> None:
    _, index, _ = planted
    res = search(index, "fire, flames", kinds=["mlp_out"], threshold=0.3)
    best = res.hits[0]
    assert (best.matrix, best.layer, best.head, best.index) == ("mlp_out", 0, None, 0)
    assert best.sign == "antipodal" and best.end == "bottom" and best.cosine < -0.3
    # The matching end is the bottom one: most negative first, holding the query tokens.
    assert {" fire", " flames"} <= {t for t, _, _ in best.tokens[:4]}
    assert all(v < 0 for _, _, v in best.tokens)
    water = search(index, "water, river, fish, swim", kinds=["mlp_out"]).hits[0]
    assert (water.matrix, water.layer, water.index, water.sign) == ("mlp_out", 0, 0, "positive")


def test_hit_tokens_agree_with_directions(planted) -> None:
    a, index, _ = planted
    for h in search(index, "fire, flames", threshold=0.0, top=6, k=5).hits:
        (d,) = [
            x
            for x in directions(a, h.matrix, h.layer, h.head, n=h.index + 1, k=5)
            if x.index == h.index
        ]
        assert h.tokens == (d.top if h.end == "top" else d.bottom)
        assert h.singular_value == pytest.approx(d.singular_value)


def test_uncached_hit_ends_equal_a_plain_matmul(tokenizer, tmp_path) -> None:
    # Only 2 directions per component cached: most hits' ends are projected at search time,
    # all in one batch; each must equal its own direction's plain product's ends.
    raw = random_weights(2, 4, 64, 256, len(tokenizer), seed=5)
    s = Settings(model="few", cache_dir=tmp_path, kinds=("ov", "mlp_out"), device="cpu")
    a = analysis_from_weights(raw, tokenizer, replace(s, n_project=2))
    hits = search(build_index(a), "fire, water", threshold=0.0, top=12, k=6).hits
    assert sum(h.index >= 2 for h in hits) >= 3
    W_U = unembed_as_read(a.weights.W_U, a.settings.projection)  # as search reads
    for h in hits:
        d = a.svd.kinds[h.matrix].decomposition
        p = d.directions[d.index(h.layer, h.head), :, h.index].double() @ W_U
        want = p.topk(6, largest=h.end == "top").indices.tolist()
        assert [t for t, _, _ in h.tokens] == [a.tokens.raw[i] for i in want], h


# --------------------------------------------------------------------------- ranking


def _reference(a: Analysis, index: SearchIndex, query: str, kinds) -> list[tuple]:
    """Every cosine, by a plain loop over the decompositions."""
    qt = parse_query(query, index.tokenizer, a.tokens.raw, a.meta.d_vocab)
    t = torch.zeros(a.meta.d_vocab, dtype=torch.float64)
    t[qt.ids] = qt.weights.double()
    W_U = unembed_as_read(a.weights.W_U, a.settings.projection)  # as search reads
    Gc = W_U @ W_U.T - W_U.shape[1] * torch.outer(W_U.mean(1), W_U.mean(1))
    lam = index.embedder.ridge * torch.linalg.eigvalsh(Gc).clamp_min(0).mean()
    x = torch.linalg.solve(
        Gc + lam * torch.eye(W_U.shape[0], dtype=torch.float64),
        W_U @ t - t.sum() * W_U.mean(1),
    )
    out = []
    for kind in kinds:
        d = a.svd.kinds[kind].decomposition
        for c, (layer, head) in enumerate(d.components):
            for i in range(d.rank):
                v = d.directions[c, :, i].double()
                out.append((float(v @ x / v.norm() / x.norm()), kind, layer, head, i))
    return sorted(out, key=lambda r: -abs(r[0]))


def test_threshold_and_top_match_plain_reference(planted) -> None:
    a, index, _ = planted
    kinds = ("ov", "mlp_in", "mlp_out")
    ref = _reference(a, index, "cat, dog", kinds)
    for threshold, top in [(0.15, 1000), (0.3, 5), (0.0, 12), (0.99, 20)]:
        hits = search(
            index, "cat, dog", method="ridge", threshold=threshold, top=top, kinds=kinds
        ).hits
        want = [r for r in ref if abs(r[0]) >= threshold][:top]
        assert len(hits) == len(want)
        got = [(h.matrix, h.layer, h.head, h.index) for h in hits]
        assert got == [r[1:] for r in want]
        for h, r in zip(hits, want):
            assert h.cosine == pytest.approx(r[0], abs=1e-5)
            assert h.sign == ("positive" if r[0] > 0 else "antipodal")
    assert search(index, "cat, dog", method="ridge", threshold=0.99, kinds=kinds).hits == []


def test_default_kinds_leave_out_qk_and_embed(planted) -> None:
    _, index, _ = planted
    hits = search(index, "cat", threshold=0.0, top=10000).hits
    assert {h.matrix for h in hits} == {"ov", "mlp_in", "mlp_out"}
    assert all(h.head is None for h in hits if h.matrix != "ov")
    hits = search(index, "cat", threshold=0.0, top=10000, kinds=["qk", "embed"]).hits
    assert {h.matrix for h in hits} == {"qk", "embed"}


def test_hit_json_keys(planted) -> None:
    _, index, _ = planted
    h = search(index, "fire").hits[0].to_json()
    assert {"matrix", "layer", "head", "index", "singular_value", "cosine", "sign", "top"} <= set(h)
    assert isinstance(h["top"][0][0], str) and isinstance(h["top"][0][1], float)


def test_token_method_matches_dense_logit_reference(planted) -> None:
    """Token scores from full projections through W_U, standardised over the vocabulary."""
    a, index, _ = planted
    kinds = ("ov", "mlp_out")
    query = "cat, dog, the"
    qt = parse_query(query, index.tokenizer, a.tokens.raw, a.meta.d_vocab)
    W_U = unembed_as_read(a.weights.W_U, a.settings.projection)  # as search reads
    ref = []
    for kind in kinds:
        d = a.svd.kinds[kind].decomposition
        for c, (layer, head) in enumerate(d.components):
            for i in range(d.rank):
                v = d.directions[c, :, i].double()
                logits = (v / v.norm()) @ W_U
                z = (logits - logits.mean()) / logits.std(unbiased=False)
                # A concept matches when its z reaches the direction's 10th best (worst).
                tau_hi = z.sort(descending=True).values[9]
                tau_lo = -z.sort().values[9]
                per = {}
                for g in range(len(qt.concepts)):
                    zs = z[qt.ids[qt.groups == g]]
                    per[g] = (zs.max(), zs.min())
                pos = torch.stack(
                    [torch.nn.functional.logsigmoid((hi - tau_hi) / 0.3) for hi, _ in per.values()]
                ).mean()
                neg = torch.stack(
                    [torch.nn.functional.logsigmoid((-lo - tau_lo) / 0.3) for _, lo in per.values()]
                ).mean()
                ref.append((float(max(pos, neg)), bool(neg > pos), kind, layer, head, i))
    ref.sort(key=lambda r: -r[0])
    hits = search(index, query, method="token", threshold=0.0, top=15, kinds=kinds).hits
    assert [(h.matrix, h.layer, h.head, h.index) for h in hits] == [r[2:] for r in ref[:15]]
    for h, r in zip(hits, ref):
        assert h.score == pytest.approx(r[0], abs=1e-3)
        assert (h.sign == "antipodal") == r[1]
    # The reported cosine is the ridge vector's.
    ridge = {
        (h.matrix, h.layer, h.head, h.index): h.cosine
        for h in search(index, query, method="ridge", threshold=0.0, top=10**6, kinds=kinds).hits
    }
    for h in hits:
        assert h.cosine == pytest.approx(ridge[(h.matrix, h.layer, h.head, h.index)], abs=1e-5)


def test_token_prefilter_keeps_the_best_matches(planted, monkeypatch) -> None:
    import core.search.ranking as cs

    _, index, _ = planted
    full = search(index, "fire, flames", threshold=0.0, top=10)
    monkeypatch.setattr(cs, "PREFILTER", 100)  # of the 384 directions searched
    cut = search(index, "fire, flames", threshold=0.0, top=10)
    assert [h.to_json() for h in cut.hits] == [h.to_json() for h in full.hits]
    assert cut.n_searched == full.n_searched
    assert (cut.hits[0].matrix, cut.hits[0].layer, cut.hits[0].head) == ("ov", 1, 2)


def test_search_is_the_same_by_either_product_route(planted, monkeypatch) -> None:
    # A CPU without native half-precision kernels takes float32 blocks
    # (core.search.product): the hits, scores and significance must not change.
    from core.search import product

    _, index, _ = planted
    runs = []
    for native in (True, False):
        monkeypatch.setattr(product, "native_half", lambda dtype, device, n=native: n)
        fresh = replace(index, nulls={}, store=None)  # each route computes its own null
        runs.append(
            [
                [h.to_json() for h in search(fresh, q, method=m, threshold=0.0, top=10).hits]
                for q in ("fire, flames", "water")
                for m in ("token", "pinv")
            ]
        )
    assert runs[0] == runs[1]
    assert all(any(h["p"] is not None for h in hits) for hits in runs[1])
