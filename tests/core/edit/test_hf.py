"""Edited Hugging Face copies: their weights and forward passes against edits made by
hand on a plain HF model, the shared model never written, export, unknown layouts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from core.edit.hf import apply_edits, export, plain_model, target_module
from core.edit.prompts import target_logprob
from core.edit.rank_one import Edit, EditSet
from core.errors import SpecError
from tests.core import reference as ref
from tests.tiny_models import ARCHS

PROMPT = "the cat and a dog ran across the green field to the"


def _kinds(arch: str) -> list[str]:
    return ["ov", "mlp_in", "mlp_out"] + (["mlp_gate"] if arch == "llama" else [])


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ARCHS)
def test_hf_copy_holds_the_dense_edit(analyses, checkpoints, arch, processing):
    """Each edited matrix, read back from the copy's own modules, is the matrix minus
    its top singular term (dense SVD of the same matrix read from the checkpoint)."""
    from transformers import AutoModelForCausalLM

    a = analyses(arch, processing)
    orig = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
    hf = apply_edits(a, [Edit(k, 1, 2 if k == "ov" else None, 0) for k in _kinds(arch)]).model
    for kind in _kinds(arch):
        head = 2 if kind == "ov" else None
        W0 = ref.component(orig, kind, 1, head, processing)
        U, S, Vh = torch.linalg.svd(W0, full_matrices=False)
        want = W0 - S[0] * torch.outer(U[:, 0], Vh[0])
        got = ref.component(hf, kind, 1, head, processing)
        assert torch.allclose(got, want, atol=2e-6 * float(W0.abs().max())), kind
        assert torch.equal(
            ref.component(hf, kind, 0, head, processing),
            ref.component(orig, kind, 0, head, processing),
        ), kind


def _hand_edit(hf, kind: str, layer: int, head: int, i: int, processing: str) -> None:
    """Edit ``hf`` in place the textbook way: dense SVD of the (folded) matrix, then
    W_O' = W_O - pinv(W_V) s u v^T, or W' = W - diag(1/w) s u v^T for a folded W_in."""
    centre = ref.centres(hf)
    with torch.no_grad():
        if kind == "ov":
            W_V = ref.value_matrix(hf, layer, head).double()
            if processing == "post":
                W_V = ref.fold(W_V, ref.norm_weight(hf, layer, 1), centre)
            W_O = ref.out_matrix(hf, layer, head)  # a view: writing it edits the model
            U, S, Vh = torch.linalg.svd(W_V @ W_O.double())
            W_O[:] = (
                W_O.double() - torch.linalg.pinv(W_V) @ (S[i] * torch.outer(U[:, i], Vh[i]))
            ).float()
        else:
            assert kind == "mlp_in"
            W = ref.xw(ref.module(hf, "mlp_in", layer))  # a view, as above
            d = W.shape[0]
            w = ref.norm_weight(hf, layer, 2) if processing == "post" else torch.ones(d).double()
            Wf = ref.fold(W.double(), w, centre) if processing == "post" else W.double()
            U, S, Vh = torch.linalg.svd(Wf, full_matrices=False)
            W[:] = (W.double() - (S[i] * torch.outer(U[:, i], Vh[i])) / w[:, None]).float()


@pytest.mark.parametrize("processing", ["raw", "post"])
@pytest.mark.parametrize("arch", ARCHS)
def test_logprobs_agree_with_hand_edited_hf_forward(analyses, checkpoints, arch, processing):
    from transformers import AutoModelForCausalLM

    a = analyses(arch, processing)
    tok = a.model.tokenizer
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    for kind, layer, head, i in [("ov", 1, 3, 0), ("ov", 0, 1, 1), ("mlp_in", 1, 0, 0)]:
        hf = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
        with torch.no_grad():
            lp0 = torch.log_softmax(hf(input_ids=ids).logits, -1)
            _hand_edit(hf, kind, layer, head, i, processing)
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


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_shared_model_is_never_written(analyses, tmp_path):
    a = analyses("llama", "post")
    shared = a.model.hf_model
    before = _snapshot(shared)
    raw_before = a.raw.W_O.clone(), a.raw.W_in.clone()
    ids = torch.tensor([[3, 17, 40, 41, 99]])
    with torch.no_grad():
        logits0 = plain_model(a)(input_ids=ids).logits
        edited = apply_edits(
            a, EditSet.parse("ov:0:1:0,ov:1:3:2,mlp_in:0:0,mlp_gate:1:3,mlp_out:1:2")
        )
        logits1 = edited.model(input_ids=ids).logits
        export(a, edited.edits, tmp_path / "out")
        # "Another session" reads the original object: it sees the original weights.
        after = _snapshot(shared)
        logits2 = plain_model(a)(input_ids=ids).logits
    assert (logits1 - logits0).abs().max() > 1e-4
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(logits0, logits2)
    assert torch.equal(a.raw.W_O, raw_before[0]) and torch.equal(a.raw.W_in, raw_before[1])


def test_export_reloads_as_the_edited_model(analyses, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    a = analyses("gpt2", "post")
    edits = EditSet.parse("ov:1:2:0,mlp_out:0:1*0.5")
    out = export(a, edits, tmp_path / "edited")
    assert (out / "svd_lens_edits.json").is_file()
    re = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tok("the fire burned with hot")["input_ids"]])
    with torch.no_grad():
        want = apply_edits(a, edits).model(input_ids=ids).logits
        assert torch.allclose(re(input_ids=ids).logits, want, atol=1e-5)
    with pytest.raises(SpecError, match="not empty"):
        export(a, edits, out)


@pytest.mark.parametrize("arch", ARCHS)
def test_exported_tokenizer_encodes_like_the_original(analyses, checkpoints, arch, tmp_path):
    """The checkpoint's own tokenizer (not the bridge's, which adds a BOS) is exported."""
    from transformers import AutoTokenizer

    a = analyses(arch, "post")
    out = export(a, EditSet.parse("mlp_out:0:1"), tmp_path / "edited")
    original = AutoTokenizer.from_pretrained(checkpoints[arch])
    exported = AutoTokenizer.from_pretrained(out)
    for text in ("the fire burned with hot", " a", "Hello world"):
        assert exported(text)["input_ids"] == original(text)["input_ids"], text
        assert exported.encode(text) == original.encode(text), text


def test_unknown_layouts_are_one_sentence(analyses):
    unknown = SimpleNamespace(config=SimpleNamespace(model_type="phi"))
    with pytest.raises(SpecError, match=r"model_type 'phi'.*use a GPT-2") as exc:
        target_module(unknown, ("attn_out", 0))
    assert str(exc.value).count(". ") == 0 and str(exc.value).endswith(".")
    with pytest.raises(SpecError, match="no mlp_gate module"):
        target_module(plain_model(analyses("gpt2")), ("mlp_gate", 0))
