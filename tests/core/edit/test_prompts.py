"""Prompt and target tokens, target log-probs against a plain forward pass, the context
limit, and the reference text's fallback and windows."""

from __future__ import annotations

import pytest
import torch

from core.edit.hf import plain_model
from core.edit.prompts import (
    FALLBACK_TEXT,
    reference_ids,
    reference_texts,
    score_and_next,
    target_ids,
    target_logprob,
)
from core.errors import SpecError
from tests.tiny_models import make_tokenizer


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


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_one_pass_gives_the_target_and_the_next_token_logprobs(analyses, checkpoints, arch):
    """Against a plain Hugging Face model read from the checkpoint: the next-token
    log-probs of the prompt alone, and the target's summed log-prob."""
    from transformers import AutoModelForCausalLM

    a = analyses(arch)
    tok = a.model.tokenizer
    prompt, target = "the fire burned with", " hot flames"
    p, t = tok(prompt)["input_ids"], target_ids(tok, target, prompt)
    got, nxt = score_and_next(plain_model(a), p, t)
    with torch.no_grad():
        ref = AutoModelForCausalLM.from_pretrained(checkpoints[arch]).eval()
        want_next = torch.log_softmax(ref(input_ids=torch.tensor([p])).logits[0, -1], -1)
        lp = torch.log_softmax(ref(input_ids=torch.tensor([p + t])).logits[0], -1)
    assert nxt.shape == want_next.shape
    torch.testing.assert_close(nxt, want_next, atol=1e-5, rtol=1e-4)
    want = sum(float(lp[len(p) - 1 + j, t[j]]) for j in range(len(t)))
    assert got == pytest.approx(want, abs=1e-4)


def test_a_prompt_past_the_context_is_refused(analyses):
    a = analyses("neox")
    tok, model = a.model.tokenizer, plain_model(a)
    n_ctx = model.config.max_position_embeddings
    prompt = " ".join(["the cat"] * n_ctx)
    with pytest.raises(SpecError, match=f"past this model's context of {n_ctx}"):
        target_logprob(model, tok, prompt, " dog")


def test_target_follows_the_prompt():
    tok = make_tokenizer()
    alone = tok(" fire", add_special_tokens=False)["input_ids"]
    assert target_ids(tok, " fire", "the house was on") == alone
    assert target_ids(tok, " fire") == alone


def test_reference_falls_back_to_builtin_text(tmp_path):
    assert reference_texts(tmp_path / "missing") == [FALLBACK_TEXT]
    (tmp_path / "a.txt").write_text("hello there")
    assert reference_texts(tmp_path) == ["hello there"]


def test_reference_windows_are_taken_round_robin():
    tok = make_tokenizer()
    texts = [FALLBACK_TEXT, "one two three four five six seven"]
    streams = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ids = reference_ids(tok, texts, seq_len=4, n_seqs=5)
    assert ids.tolist() == [
        streams[0][:4],
        streams[1][:4],
        streams[0][4:8],
        streams[1][4:8],
        streams[0][8:12],
    ]
    with pytest.raises(SpecError, match="reference text is empty"):
        reference_ids(tok, [""])
