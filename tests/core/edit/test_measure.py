"""Measurements: agreement with a plain HF forward pass whose weights are edited by hand,
the batched sweep against one-at-a-time copies, planted directions, specificity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.analysis import Analysis, open_analysis
from core.edit.hf import apply_edits, plain_model
from core.edit.measure import (
    FALLBACK_TEXT,
    continuation,
    measure,
    reference_ids,
    reference_texts,
    specificity,
    sweep,
    target_logprob,
)
from core.edit.rank_one import Edit, EditSet
from core.errors import SpecError
from core.query import directions
from core.settings import Settings
from tests.core import reference as ref
from tests.tiny_models import make_hf_model, make_tokenizer

PROMPT = "the cat and a dog ran across the green field to the"


def _open(path: Path, processing: str, cache: Path) -> Analysis:
    return open_analysis(
        Settings(model=str(path), processing=processing, device="cpu", cache_dir=cache)
    )


@pytest.fixture(scope="module")
def analyses(checkpoints, tmp_path_factory):
    cache = tmp_path_factory.mktemp("measure-cache")
    made: dict[tuple[str, str], Analysis] = {}

    def get(arch: str, processing: str = "post") -> Analysis:
        if (arch, processing) not in made:
            made[arch, processing] = _open(checkpoints[arch], processing, cache)
        return made[arch, processing]

    return get


# --------------------------------------------------------------------------- by hand


def _norm_weight(hf, arch: str, layer: int, which: int) -> torch.Tensor:
    if arch == "gpt2":
        blk = hf.transformer.h[layer]
        ln = blk.ln_1 if which == 1 else blk.ln_2
    else:
        blk = hf.gpt_neox.layers[layer] if arch == "neox" else hf.model.layers[layer]
        ln = blk.input_layernorm if which == 1 else blk.post_attention_layernorm
    return ln.weight.detach().double()


def _fold(W: torch.Tensor, w: torch.Tensor, arch: str) -> torch.Tensor:
    W = w[:, None] * W
    return W - W.mean(dim=0, keepdim=True) if arch != "llama" else W


def _hand_edit(hf, arch: str, kind: str, layer: int, head: int, i: int, processing: str) -> None:
    """Edit ``hf`` in place the textbook way: dense SVD of the (folded) matrix, then
    W_O' = W_O - pinv(W_V) s u v^T, or W' = W - diag(1/w) s u v^T for a folded W_in."""
    cfg = hf.config
    d = cfg.hidden_size
    nh = cfg.num_attention_heads
    dh = d // nh
    with torch.no_grad():
        if kind == "ov":
            if arch == "gpt2":
                attn = hf.transformer.h[layer].attn
                W_V = attn.c_attn.weight[:, 2 * d + head * dh : 2 * d + (head + 1) * dh].double()
                W_O = attn.c_proj.weight[head * dh : (head + 1) * dh].double()
            elif arch == "neox":
                attn = hf.gpt_neox.layers[layer].attention
                W_V = attn.query_key_value.weight.reshape(nh, 3, dh, d)[head, 2].T.double()
                W_O = attn.dense.weight[:, head * dh : (head + 1) * dh].T.double()
            else:
                attn = hf.model.layers[layer].self_attn
                g = head // (nh // cfg.num_key_value_heads)
                W_V = attn.v_proj.weight[g * dh : (g + 1) * dh].T.double()
                W_O = attn.o_proj.weight[:, head * dh : (head + 1) * dh].T.double()
            if processing == "post":
                W_V = _fold(W_V, _norm_weight(hf, arch, layer, 1), arch)
            U, S, Vh = torch.linalg.svd(W_V @ W_O)
            new = W_O - torch.linalg.pinv(W_V) @ (S[i] * torch.outer(U[:, i], Vh[i]))
            if arch == "gpt2":
                attn.c_proj.weight[head * dh : (head + 1) * dh] = new.float()
            elif arch == "neox":
                attn.dense.weight[:, head * dh : (head + 1) * dh] = new.T.float()
            else:
                attn.o_proj.weight[:, head * dh : (head + 1) * dh] = new.T.float()
        else:
            assert kind == "mlp_in"
            W = ref.mlp_matrix(hf, "mlp_in", layer)
            w = _norm_weight(hf, arch, layer, 2) if processing == "post" else torch.ones(d)
            Wf = _fold(W, w, arch) if processing == "post" else W
            U, S, Vh = torch.linalg.svd(Wf, full_matrices=False)
            new = W - (S[i] * torch.outer(U[:, i], Vh[i])) / w[:, None]
            if arch == "gpt2":
                hf.transformer.h[layer].mlp.c_fc.weight[:] = new.float()
            elif arch == "neox":
                hf.gpt_neox.layers[layer].mlp.dense_h_to_4h.weight[:] = new.T.float()
            else:
                hf.model.layers[layer].mlp.up_proj.weight[:] = new.T.float()


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_logprobs_agree_with_hand_edited_hf_forward(analyses, checkpoints, arch, processing):
    from transformers import AutoModelForCausalLM

    a = analyses(arch, processing)
    tok = a.model.tokenizer
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    for kind, layer, head, i in [("ov", 1, 3, 0), ("ov", 0, 1, 1), ("mlp_in", 1, 0, 0)]:
        hf = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
        with torch.no_grad():
            lp0 = torch.log_softmax(hf(input_ids=ids).logits, -1)
            _hand_edit(hf, arch, kind, layer, head, i, processing)
            want = torch.log_softmax(hf(input_ids=ids).logits, -1)
            e = Edit(kind, layer, head if kind == "ov" else None, i)
            got = torch.log_softmax(apply_edits(a, [e]).model(input_ids=ids).logits, -1)
        assert (want - lp0).abs().max() > 1e-3, "the edit should matter"
        assert (got - want).abs().max() < 1e-4, (kind, layer, head, i)
        # The reported target log-prob is the same number read off the hand-edited model.
        p = tok(PROMPT)["input_ids"]
        t = tok(" cat", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(hf(input_ids=torch.tensor([p + t])).logits[0], -1)
        hand = sum(float(lp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
        mine = target_logprob(apply_edits(a, [e]).model, tok, PROMPT, " cat")
        assert mine == pytest.approx(hand, abs=1e-4)


def test_multi_token_target_is_the_sequence_logprob(analyses):
    a = analyses("gpt2")
    tok, model = a.model.tokenizer, plain_model(a)
    prompt, target = "the fire burned with", " hot flames"
    p = tok(prompt)["input_ids"]
    t = tok(target, add_special_tokens=False)["input_ids"]
    assert len(t) > 1
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([p + t])).logits[0], -1)
    want = sum(float(lp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
    assert target_logprob(model, tok, prompt, target) == pytest.approx(want, abs=1e-5)
    with pytest.raises(SpecError, match="target is empty"):
        target_logprob(model, tok, prompt, "")


@pytest.mark.parametrize("arch,kind,head", [("gpt2", "ov", 2), ("llama", "mlp_gate", None)])
def test_batched_sweep_equals_one_copy_per_direction(analyses, arch, kind, head):
    a = analyses(arch)
    rows = sweep(a, kind, 1, head, PROMPT, " the", n=6, batch=4)
    base = target_logprob(plain_model(a), a.model.tokenizer, PROMPT, " the")
    assert [r.index for r in rows] == list(range(6))
    for r in rows:
        m = apply_edits(a, [Edit(kind, 1, head, r.index)]).model
        lp = target_logprob(m, a.model.tokenizer, PROMPT, " the")
        assert r.logprob == pytest.approx(lp, abs=1e-4)
        assert r.delta_logprob == pytest.approx(lp - base, abs=1e-4)


# --------------------------------------------------------------------------- planted


def _single_token(tok, words) -> tuple[str, int]:
    for w in words:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return w, ids[0]
    raise AssertionError("no single-token word")


def _planted(root: Path, sign: float) -> tuple[Path, str]:
    """A GPT-2 whose head 1.0 writes (sign x) the target's unembedding direction, fed by
    a constant value bias, so one OV direction carries the target."""
    tok = make_tokenizer()
    target, t = _single_token(tok, [" cat", " dog", " the", " and", " fish"])
    hf = make_hf_model("gpt2", seed=7)
    d, dh = hf.config.n_embd, hf.config.n_embd // hf.config.n_head
    with torch.no_grad():
        w_f = hf.transformer.ln_f.weight.double()
        col = w_f * hf.lm_head.weight[t].double()
        col = col - col.mean()
        attn = hf.transformer.h[1].attn
        attn.c_proj.weight[0] += (sign * 2.0 * col / col.norm()).float()
        attn.c_attn.bias[2 * d + 0] = 3.0
        assert dh > 1
    path = root / f"planted{'+' if sign > 0 else '-'}"
    hf.save_pretrained(path)
    tok.save_pretrained(path)
    return path, target


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_planted_direction_dominates_the_sweep(tmp_path, sign):
    path, target = _planted(tmp_path, sign)
    a = _open(path, "post", tmp_path / "cache")
    top = directions(a, "ov", 1, 0, n=1, k=3)[0]
    assert top.top[0][0] == target  # the planted direction lists the target first
    rows = sweep(a, "ov", 1, 0, PROMPT, target, n=16, batch=8)
    deltas = [r.delta_logprob for r in rows]
    if sign > 0:
        assert min(range(16), key=deltas.__getitem__) == 0
        assert deltas[0] < -0.3
    else:  # the antipodal plant pushed the target down; removing it raises it
        assert max(range(16), key=deltas.__getitem__) == 0
        assert deltas[0] > 0.3
    assert abs(deltas[0]) > 10 * max(abs(x) for x in deltas[1:])
    report = measure(a, [Edit("ov", 1, 0, 0)], PROMPT, target, max_new_tokens=3)
    assert (report.logprob_after - report.logprob_before) == pytest.approx(deltas[0], abs=1e-4)


# --------------------------------------------------------------------------- specificity


def test_specificity_is_zero_without_edits_and_positive_with(analyses):
    a = analyses("neox")
    tok = a.model.tokenizer
    ids = reference_ids(tok, [FALLBACK_TEXT, "one two three four five six seven"], 16, 4)
    assert ids.shape == (4, 16)
    base = plain_model(a)
    s0 = specificity(base, plain_model(a), ids)
    assert s0.kl == pytest.approx(0.0, abs=1e-7) and s0.loss_change == pytest.approx(0.0, abs=1e-6)
    edited = apply_edits(a, EditSet.parse("ov:0:0:0,ov:1:1:0,mlp_out:1:0,mlp_in:0:0")).model
    s1 = specificity(base, edited, ids, batch=3)
    assert s1.kl > 0 and s1.n_tokens == 64
    assert s1.loss_before == pytest.approx(s0.loss_before, abs=1e-6)
    with torch.no_grad():  # loss by hand
        lp = torch.log_softmax(edited(input_ids=ids).logits, -1)[:, :-1]
        nll = -lp.gather(2, ids[:, 1:, None]).mean()
    assert s1.loss_after == pytest.approx(float(nll), abs=1e-5)


def test_reference_falls_back_to_builtin_text(tmp_path):
    assert reference_texts(tmp_path / "missing") == [FALLBACK_TEXT]
    (tmp_path / "a.txt").write_text("hello there")
    assert reference_texts(tmp_path) == ["hello there"]


def test_continuations_are_greedy_and_change_with_big_edits(analyses):
    a = analyses("gpt2")
    tok = a.model.tokenizer
    base = plain_model(a)
    c1 = continuation(base, tok, "the fire", 6)
    assert c1 == continuation(base, tok, "the fire", 6)
    ids = tok("the fire")["input_ids"]
    with torch.no_grad():
        first = int(base(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    assert c1.startswith(tok.decode([first]))
    report = measure(a, EditSet.parse("ov:1:0:0"), "the fire", " cat", max_new_tokens=4)
    assert report.continuation_before == continuation(base, tok, "the fire", 4)
    assert set(report.to_json()) >= {
        "target_logprob_before",
        "target_logprob_after",
        "kl_reference",
        "continuation_before",
        "continuation_after",
    }


def test_target_follows_the_prompt_and_search_hits_become_edits():
    from core.edit.measure import edits_from_hits, target_ids

    tok = make_tokenizer()
    alone = tok(" fire", add_special_tokens=False)["input_ids"]
    assert target_ids(tok, " fire", "the house was on") == alone
    hits = [
        {"matrix": "ov", "layer": 1, "head": 2, "index": 0},
        {"matrix": "qk", "layer": 0, "head": 1, "index": 3},
        {"matrix": "mlp_out", "layer": 0, "head": None, "index": 4},
    ]
    assert edits_from_hits(hits).spec() == "ov:1:2:0,mlp_out:0:4"
    assert edits_from_hits(hits, 0.5).spec() == "ov:1:2:0*0.5,mlp_out:0:4*0.5"
