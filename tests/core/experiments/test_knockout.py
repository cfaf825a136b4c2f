"""Knockout: the deleted sets against deletions written by hand into a plain HF model
(dense ``torch.linalg.svd``, ``s u v^T`` removed), a planted direction that carries its
token while its matched control does not, and where the verdicts come from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.edit.prompts import reference_ids
from core.errors import SpecError
from core.experiments.knockout import (
    INTERPRETABLE,
    MATCHED,
    RANDOM,
    KnockoutOptions,
    choose_sets,
    knockout,
    top_token_ids,
)
from core.experiments.knockout_cache import cached_knockout
from core.label.store import LabelRecord, LabelStore, reading
from core.query import directions
from tests.core import reference as ref
from tests.core.edit.conftest import open_checkpoint
from tests.tiny_models import TEXT, make_hf_model, make_tokenizer

SAMPLE = "the cat and a dog ran across the green field to the old house by the river " * 4


def _ids(a, text=SAMPLE):
    return reference_ids(a.model.tokenizer, [text], seq_len=24, n_seqs=2)


def _hf(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _logprobs(hf, ids):
    with torch.no_grad():
        return torch.log_softmax(hf(ids).logits.double(), -1)


def _delete_by_hand(hf, specs):
    """Remove ``s u v^T`` of each listed ``mlp_*:L:i`` from a dense SVD of its matrix."""
    by_matrix: dict[tuple[str, int], list[int]] = {}
    for spec in specs:
        kind, layer, index = spec.split(":")
        by_matrix.setdefault((kind, int(layer)), []).append(int(index))
    for (kind, layer), idx in by_matrix.items():
        W = ref.xw(ref.module(hf, kind, layer))  # a view: writing it edits hf
        U, S, Vh = torch.linalg.svd(W.detach().double(), full_matrices=False)
        with torch.no_grad():
            W[:] = W.double() - (U[:, idx] * S[idx]) @ Vh[idx]
    return hf


def _verdicts(yes, no, kind="mlp_out", layer=1):
    return {
        **{(kind, layer, None, i): True for i in yes},
        **{(kind, layer, None, i): False for i in no},
    }


def test_every_set_matches_a_dense_hand_deletion(analyses, checkpoints):
    a = analyses("gpt2", "raw")
    ids = _ids(a)
    verdicts = {**_verdicts([0, 3], [1, 2, 4, 5, 6]), **_verdicts([2], [0, 1], "mlp_in")}
    opts = KnockoutOptions(kinds=("mlp_in", "mlp_out"), layers=(1,), draws=1, k_tokens=5)
    res = knockout(a, ids, verdicts, opts)
    assert res.names == (INTERPRETABLE, MATCHED, RANDOM)
    assert sorted(res.deleted[0]) == ["mlp_in:1:2", "mlp_out:1:0", "mlp_out:1:3"]
    lp0 = _logprobs(_hf(checkpoints["gpt2"]), ids)
    nxt = ids[:, 1:, None]
    assert res.loss_orig == pytest.approx(float(-lp0[:, :-1].gather(2, nxt).mean()), abs=1e-4)
    target = torch.isin(ids[:, 1:], top_token_ids(a, "mlp_out", 1, None, [0, 3], 5).reshape(-1))
    target |= torch.isin(ids[:, 1:], top_token_ids(a, "mlp_in", 1, None, [2], 5).reshape(-1))
    assert res.n_target == int(target.sum()) > 0
    for s, specs in enumerate(res.deleted):
        assert len(specs) == 3
        lp1 = _logprobs(_delete_by_hand(_hf(checkpoints["gpt2"]), specs), ids)
        loss = float(-lp1[:, :-1].gather(2, nxt).mean())
        kl = float((lp0.exp() * (lp0 - lp1)).sum(-1).mean())
        delta = (lp1 - lp0)[:, :-1].gather(2, nxt)[..., 0]
        assert float(res.loss[s]) == pytest.approx(loss, abs=1e-4), specs
        assert float(res.kl[s]) == pytest.approx(kl, abs=1e-4), specs
        assert float(res.dlogprob_target[s]) == pytest.approx(float(delta[target].mean()), abs=1e-4)


def test_matched_set_is_nearest_in_singular_value_and_fills_from_unlabelled(analyses):
    a = analyses("gpt2", "raw")
    S = a.svd.kinds["mlp_out"].decomposition.S[1].double()
    comps = [("mlp_out", 1, None)]
    (interp, matched, r0, r1), fill = choose_sets(a, _verdicts([5], [0, 9, 4]), comps, 2)
    assert interp == [("mlp_out", 1, None, 5)] and fill == 0
    best = min([0, 9, 4], key=lambda j: abs(float(S[j] - S[5])))
    assert matched == [("mlp_out", 1, None, best)]
    assert len(r0) == len(r1) == 1  # one random direction per interpretable one
    (_, matched, *_), fill = choose_sets(a, _verdicts([3, 5], [4]), comps, 0)
    assert fill == 1 and len(matched) == 2  # one labelled, one unlabelled neighbour
    assert {m[3] for m in matched} & {3, 5} == set()


def _single_token(tok, words):
    for w in words:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return w, ids[0]
    raise AssertionError("no single-token word")


def _planted(root: Path) -> tuple[Path, int]:
    """A GPT-2 whose layer-1 MLP has one neuron always on, writing the target's
    unembedding direction strongly: one MLP-out direction carries the target."""
    tok = make_tokenizer()
    _, t = _single_token(tok, [" cat", " dog", " the", " and", " fish"])
    hf = make_hf_model("gpt2", seed=3)
    with torch.no_grad():
        col = hf.transformer.ln_f.weight.double() * hf.lm_head.weight[t].double()
        col = col - col.mean()
        mlp = hf.transformer.h[1].mlp
        mlp.c_fc.weight[:, 0] = 0.0  # the neuron reads nothing: constant activation
        mlp.c_fc.bias[0] = 3.0
        mlp.c_proj.weight[0] += (4.0 * col / col.norm()).float()
    path = root / "planted-mlp"
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path, t


def test_planted_direction_carries_its_token_and_the_matched_set_does_not(tmp_path):
    path, t = _planted(tmp_path)
    a = open_checkpoint(path, "post", tmp_path / "cache")
    assert int(top_token_ids(a, "mlp_out", 1, None, [0], 1)[0, 0]) == t
    meta = a.meta
    with LabelStore.in_cache(a.settings.cache_dir) as labels:
        labels.put(
            LabelRecord(
                meta.name,
                meta.weights_hash,
                "mlp_out",
                1,
                None,
                i,
                "offline",
                i == 0,
                **reading(a.settings),
            )  # fmt: skip
            for i in range(10)
        )
    ids = reference_ids(a.model.tokenizer, [TEXT * 2], seq_len=32, n_seqs=3)
    assert (ids[:, 1:] == t).any()
    opts = KnockoutOptions(kinds=("mlp_out",), layers=(1,), draws=2, k_tokens=1)
    res, hit = cached_knockout(a, ids, opts, label=False)
    assert not hit and res.deleted[0] == ("mlp_out:1:0",) and res.deleted[1] == ("mlp_out:1:1",)
    planted, control = float(res.dlogprob_target[0]), float(res.dlogprob_target[1])
    assert planted < -1.0  # the target loses over a nat where it comes next
    assert abs(control) < 0.1 * abs(planted)
    assert float(res.dlogprob_own[0]) == planted  # its own tokens are the target
    again, hit = cached_knockout(a, ids, opts, label=False)
    assert hit and again.rows() == res.rows() and again.deleted == res.deleted
    with LabelStore.in_cache(a.settings.cache_dir) as labels:  # a new verdict: a new run
        labels.put(LabelRecord(meta.name, meta.weights_hash, "mlp_out", 1, None, 2, "manual", True,
                               **reading(a.settings)))  # fmt: skip
    changed, hit = cached_knockout(a, ids, opts, label=False)
    assert not hit and sorted(changed.deleted[0]) == ["mlp_out:1:0", "mlp_out:1:2"]


def test_top_token_ids_are_the_listed_tokens(analyses):
    a = analyses("llama", "post")
    for k in (3, a.svd.k + 4):  # from the cache, and projected here
        ids = top_token_ids(a, "mlp_out", 0, None, [0, 2], k)
        listed = directions(a, "mlp_out", 0, None, n=3, k=k)
        for row, j in zip(ids.tolist(), (0, 2)):
            assert [a.tokens.raw[i] for i in row] == [t for t, _, _ in listed[j].top]


def test_nothing_interpretable_and_bad_options_are_one_sentence(analyses):
    a = analyses("gpt2", "raw")
    with pytest.raises(SpecError, match="labelled interpretable"):
        knockout(a, _ids(a), _verdicts([], [0, 1]), KnockoutOptions(kinds=("mlp_out",)))
    with pytest.raises(SpecError):
        KnockoutOptions(kinds=("qk",))
    with pytest.raises(SpecError):
        KnockoutOptions(labeller="gpt")
    with pytest.raises(SpecError):
        knockout(a, _ids(a), {}, KnockoutOptions(kinds=("mlp_gate",)))
