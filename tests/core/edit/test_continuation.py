"""Greedy continuations: each token is the argmax of a whole forward pass over the text
so far (by hand, without a key/value cache), also where the window slides."""

from __future__ import annotations

import pytest
import torch

from core.edit.continuation import continuation
from core.edit.hf import plain_model
from core.edit.prompts import context_length


def _by_hand(model, tok, ids: list[int], n: int) -> str:
    n_ctx = context_length(model)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(n):
            x = torch.tensor([(ids + new)[-n_ctx:]])
            nxt = int(model(input_ids=x).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    return tok.decode(new)


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_continuations_are_greedy(analyses, arch):
    a = analyses(arch)
    tok = a.model.tokenizer
    base = plain_model(a)
    for prompt in ("the fire", "a cat and a dog ran across the green field to the"):
        c1 = continuation(base, tok, prompt, 12)
        assert c1 == continuation(base, tok, prompt, 12)
        assert c1 == _by_hand(base, tok, tok(prompt)["input_ids"], 12)
    assert continuation(base, tok, "the fire", 0) == ""


def test_a_continuation_past_the_context_slides_its_window(analyses):
    a = analyses("gpt2")
    tok = a.model.tokenizer
    base = plain_model(a)
    n_ctx = context_length(base)
    ids = tok("the fire")["input_ids"]
    prompt = tok.decode((ids * n_ctx)[: n_ctx - 3])
    ids = tok(prompt)["input_ids"]
    assert len(ids) + 8 > n_ctx  # the cache could not hold it
    assert continuation(base, tok, prompt, 8) == _by_hand(base, tok, ids, 8)
