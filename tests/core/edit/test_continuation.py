"""Greedy continuations: deterministic, and the first token is the forward's argmax."""

from __future__ import annotations

import torch

from core.edit.continuation import continuation
from core.edit.hf import plain_model


def test_continuations_are_greedy(analyses):
    a = analyses("gpt2")
    tok = a.model.tokenizer
    base = plain_model(a)
    c1 = continuation(base, tok, "the fire", 6)
    assert c1 == continuation(base, tok, "the fire", 6)
    ids = tok("the fire")["input_ids"]
    new = []
    with torch.no_grad():  # greedy decoding by hand
        for _ in range(6):
            nxt = int(base(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if nxt == tok.eos_token_id:
                break
            new.append(nxt)
    assert c1 == tok.decode(new)
    assert continuation(base, tok, "the fire", 0) == ""
