"""Greedy continuations, to read what an edit does to the model's text."""

from __future__ import annotations

from typing import Any

import torch

from core.edit.prompts import context_length, prompt_ids


@torch.no_grad()
def continuation(model: Any, tokenizer: Any, prompt: str, max_new_tokens: int = 20) -> str:
    """The greedy continuation of ``prompt`` (decoded new text only).

    Stops early at the end-of-text token; a long prompt keeps its last
    ``context_length`` tokens (no key/value cache: each step reruns the window).
    """
    ids = prompt_ids(tokenizer, prompt)
    n_ctx = context_length(model)
    eos = tokenizer.eos_token_id
    new: list[int] = []
    dev = next(model.parameters()).device
    for _ in range(max_new_tokens):
        x = torch.tensor([(ids + new)[-n_ctx:]], device=dev)
        nxt = int(model(input_ids=x).logits[0, -1].argmax())
        if nxt == eos and eos is not None:
            break
        new.append(nxt)
    return str(tokenizer.decode(new))
