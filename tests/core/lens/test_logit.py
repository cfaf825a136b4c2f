"""The logit lens against a plain Hugging Face forward pass of the same checkpoint."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.errors import SpecError
from core.lens import MAX_TOKENS, encode, logit_lens, row_names, run_prompt, target_token
from tests.core.reference import final_norm
from tests.tiny_models import ARCHS

PROMPT = "the fire burned with hot flames and smoke"


def _hand_norm(model, x: torch.Tensor) -> torch.Tensor:
    """The final norm written out from its parameters (LayerNorm or RMSNorm)."""
    ln = final_norm(model)
    w = ln.weight.detach().double()
    x = x.double()
    if isinstance(ln, torch.nn.LayerNorm):
        return F.layer_norm(x, x.shape[-1:], w, ln.bias.detach().double(), ln.eps)
    eps = getattr(ln, "variance_epsilon", getattr(ln, "eps", 1e-6))
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


@pytest.mark.parametrize("arch", ARCHS)
def test_last_layer_is_the_models_own_logits(arch, analyses, hf_models):
    a, model = analyses(arch), hf_models(arch)
    run = run_prompt(a, PROMPT)
    ids = torch.tensor([run.ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    lens = logit_lens(run.capture, k=5)
    assert lens.n_rows == a.meta.n_layers + 1
    last = run.capture.logits(a.meta.n_layers).double()
    torch.testing.assert_close(last, logits, atol=1e-4, rtol=1e-4)
    probs = torch.softmax(logits, -1)
    top = probs.topk(5, -1)
    assert torch.equal(lens.top_idx[-1], top.indices)
    torch.testing.assert_close(lens.top_prob[-1].double(), top.values, atol=1e-5, rtol=1e-4)
    # The next token of the prompt is each position's target; the last has none.
    nxt = ids[0, 1:]
    want = probs[:-1].gather(1, nxt[:, None])[:, 0]
    torch.testing.assert_close(lens.target_prob[-1, :-1].double(), want, atol=1e-6, rtol=1e-4)
    rank = 1 + (logits[:-1] > logits[:-1].gather(1, nxt[:, None])).sum(-1)
    assert torch.equal(lens.target_rank[-1, :-1], rank)
    assert lens.target[-1] == -1 and lens.target_rank[-1, -1] == 0
    assert torch.isnan(lens.target_prob[:, -1]).all()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("positions", [1, 5, 10_000])
def test_blocks_that_split_rows_give_each_rows_own_lens(arch, analyses, monkeypatch, positions):
    """However the (row, position) pairs are cut into blocks (one position, blocks that
    end mid-row, all at once), each row's lens is the one its own logits give."""
    import core.lens.logit as logit

    a = analyses(arch)
    cap = run_prompt(a, PROMPT).capture
    V = cap.W_U.shape[1]
    monkeypatch.setattr(logit, "BLOCK_BYTES", positions * V * cap.W_U.element_size())
    lens = logit_lens(cap, k=4)  # each position's next token: targets differ by position
    nxt = cap.ids[1:, None]
    for row in range(cap.resid.shape[0]):
        logits = cap.normed[row].double() @ cap.W_U.double()
        if cap.b_U is not None:
            logits = logits + cap.b_U.double()
        probs = torch.softmax(logits, -1)
        assert torch.equal(lens.top_idx[row], probs.topk(4, -1).indices)
        want = probs[:-1].gather(1, nxt)[:, 0]
        torch.testing.assert_close(lens.target_prob[row, :-1].double(), want, atol=1e-6, rtol=1e-4)
        rank = 1 + (logits[:-1] > logits[:-1].gather(1, nxt)).sum(-1)
        assert torch.equal(lens.target_rank[row, :-1], rank)
        assert lens.target_rank[row, -1] == 0 and torch.isnan(lens.target_prob[row, -1])


@pytest.mark.parametrize("arch", ARCHS)
def test_intermediate_layers_match_hooked_hidden_states(arch, analyses, hf_models):
    a, model = analyses(arch), hf_models(arch)
    run = run_prompt(a, PROMPT)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([run.ids]), output_hidden_states=True)
    W = model.get_output_embeddings().weight.detach().double()
    # hidden_states[l] is the stream entering block l; HF's last entry is already normed.
    target = target_token(a.model.tokenizer, " fire", PROMPT)
    lens = logit_lens(run.capture, k=3, target=target)
    assert (lens.target == target).all()
    for row in range(a.meta.n_layers):
        h = out.hidden_states[row][0]
        torch.testing.assert_close(
            run.capture.resid[row].double(), h.double(), atol=1e-5, rtol=1e-5
        )
        logits = _hand_norm(model, h) @ W.T
        probs = torch.softmax(logits, -1)
        torch.testing.assert_close(
            lens.target_prob[row].double(), probs[:, target], atol=1e-6, rtol=1e-4
        )
        assert torch.equal(lens.top_idx[row], probs.topk(3, -1).indices)
        rank = 1 + (logits > logits[:, target : target + 1]).sum(-1)
        assert torch.equal(lens.target_rank[row], rank)
    # The final norm is applied once: the model's last hidden state is the lens's last row.
    torch.testing.assert_close(
        run.capture.normed[-1].double(), out.hidden_states[-1][0].double(), atol=1e-5, rtol=1e-5
    )


def test_row_names():
    assert row_names(2) == ["embed", "L0", "L1"]


def test_bad_prompts_are_one_sentence(analyses):
    a = analyses("gpt2")
    tok = a.model.tokenizer
    for bad in ("", "   "):
        with pytest.raises(SpecError, match=r"^The prompt is empty; [^.]*\.$"):
            encode(tok, bad, 64)
    long = "fire " * (MAX_TOKENS + 10)
    with pytest.raises(SpecError, match=r"^The prompt is \d+ tokens long; [^.]* at most 64,"):
        run_prompt(a, long)  # the tiny model's context (64) is the tighter cap
    with pytest.raises(SpecError, match=r"at most 8,"):
        encode(tok, PROMPT, 64, max_tokens=8)
    with pytest.raises(SpecError, match="target is empty"):
        target_token(tok, "", PROMPT)
