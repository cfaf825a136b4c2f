"""Prompts and targets as token ids, their log-probabilities, and the reference text
that specificity is measured on.

A target string is tokenised as it follows the prompt (:func:`target_ids`) and appended
to the prompt's tokens. A multi-token target is scored as the log-probability of the
whole sequence, ``sum_t log p(target_t | prompt, target_<t)``; an empty target is an
error. All forward passes are plain Hugging Face ones (``core.edit.hf.plain_model``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from core.errors import SpecError
from core.model.families import family_of
from core.settings import REPO_ROOT

#: Held-out text of the demo model, the default reference set for specificity.
HELDOUT_DIR = REPO_ROOT / "models" / "demo-gpt2" / "heldout"

#: Used when no held-out text exists: plain prose touching many topics.
FALLBACK_TEXT = (
    "The fire burned low in the hearth while snow fell over the quiet village. "
    "In the morning the children ran down to the frozen river, where the ice was thick "
    "enough to hold a horse. Their mother counted the eggs, one, two, three, four, and "
    "sent the eldest to the market with a basket and a few copper coins. The king's "
    "soldiers marched along the road toward the castle, their red and blue banners "
    "bright against the grey sky. A cat slept on the warm stones by the door, and a dog "
    "barked at the crows in the green field beyond the wall."
)


def prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with the tokenizer's usual special tokens (e.g. BOS)."""
    ids = list(tokenizer(prompt)["input_ids"])
    if not ids:
        raise SpecError("The prompt is empty; give some text with --prompt.")
    return ids


def target_ids(tokenizer: Any, target: str, prompt: str | None = None) -> list[int]:
    """Token ids of ``target`` as it would follow ``prompt``; at least one.

    When the prompt's tokens are a prefix of the tokens of ``prompt + target`` (always for
    GPT-2-style BPE with a leading space on the target), the target is what follows them,
    so SentencePiece tokenizers get their word-initial pieces right; otherwise the target
    is tokenised on its own (no special tokens).
    """
    if not target:
        raise SpecError("The target is empty; give a token such as ' fire' (mind the space).")
    if prompt:
        p = prompt_ids(tokenizer, prompt)
        joint = list(tokenizer(prompt + target)["input_ids"])
        if len(joint) > len(p) and joint[: len(p)] == p:
            return joint[len(p) :]
    ids = list(tokenizer(target, add_special_tokens=False)["input_ids"])
    if not ids:
        raise SpecError("The target is empty; give a token such as ' fire' (mind the space).")
    return ids


def context_length(model: Any) -> int:
    """The longest token sequence ``model`` accepts."""
    return family_of(model).n_ctx(model.config)


@torch.no_grad()
def logprobs(model: Any, ids: Int[Tensor, "b t"]) -> Float[Tensor, "b t vocab"]:
    """Next-token log-probabilities of each position, float32 on the CPU."""
    dev = next(model.parameters()).device
    logits = model(input_ids=ids.to(dev)).logits
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def target_scores(
    lp: Float[Tensor, "b t vocab"], n_prompt: int, target: Sequence[int]
) -> Float[Tensor, " b"]:
    """``log p(target | prompt)`` in each row of ``lp``, the log-probs of
    ``prompt + target[:-1]`` (the prompt ``n_prompt`` tokens long).
    """
    lp = lp[:, n_prompt - 1 :]
    tgt = torch.tensor(list(target))[None, :, None].expand(lp.shape[0], -1, 1)
    return lp.gather(2, tgt)[..., 0].sum(dim=1)


def score(model: Any, prompt: Sequence[int], target: Sequence[int]) -> float:
    """``log p(target | prompt)`` under ``model``, from token ids."""
    return score_and_next(model, prompt, target)[0]


def score_and_next(
    model: Any, prompt: Sequence[int], target: Sequence[int]
) -> tuple[float, Float[Tensor, " vocab"]]:
    """``log p(target | prompt)`` and the log-probs of every token after ``prompt`` (its
    last position), from the one pass over ``prompt + target[:-1]``.
    """
    ids = torch.tensor([[*prompt, *target[:-1]]])
    n_ctx = context_length(model)
    if ids.shape[1] > n_ctx:
        raise SpecError(
            f"Prompt and target are {ids.shape[1] + 1} tokens, past this model's context "
            f"of {n_ctx}; shorten the prompt."
        )
    lp = logprobs(model, ids)
    return float(target_scores(lp, len(prompt), target)[0]), lp[0, len(prompt) - 1]


def target_logprob(model: Any, tokenizer: Any, prompt: str, target: str) -> float:
    """``log p(target | prompt)`` under ``model`` (summed over the target's tokens)."""
    return score(model, prompt_ids(tokenizer, prompt), target_ids(tokenizer, target, prompt))


def reference_texts(directory: Path | None = None) -> list[str]:
    """Reference documents: the demo model's held-out ``*.txt`` (one text per file),
    else the built-in paragraph.
    """
    directory = HELDOUT_DIR if directory is None else Path(directory)
    files = sorted(directory.glob("*.txt")) if directory.is_dir() else []
    texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
    texts = [t for t in texts if t.strip()]
    return texts or [FALLBACK_TEXT]


def default_reference(tokenizer: Any, model: Any) -> Int[Tensor, "n t"]:
    """:func:`reference_ids` of :func:`reference_texts`, in windows of at most 64 tokens
    (fewer for a shorter context): what specificity is measured on unless told.
    """
    return reference_ids(tokenizer, reference_texts(), seq_len=min(64, context_length(model)))


def reference_ids(
    tokenizer: Any, texts: Sequence[str], seq_len: int = 64, n_seqs: int = 8
) -> Int[Tensor, "n t"]:
    """Up to ``n_seqs`` windows of ``seq_len`` tokens, taken round-robin from ``texts``.

    Shorter when the texts are short: one window of all their tokens at least.
    """
    # Only the first windows are used: cut long texts first (40 characters a token is
    # far more than any tokenizer averages), so a whole book is never tokenised.
    streams = [
        list(tokenizer(t[: 40 * seq_len * n_seqs], add_special_tokens=False)["input_ids"])
        for t in texts
    ]
    streams = [s for s in streams if len(s) >= 2]
    if not streams:
        raise SpecError("The reference text is empty; give a text file with some words in it.")
    seq_len = min(seq_len, max(len(s) for s in streams))
    windows: list[list[int]] = []
    pos = 0
    while len(windows) < n_seqs:
        grabbed = False
        for s in streams:
            if pos + seq_len <= len(s) and len(windows) < n_seqs:
                windows.append(s[pos : pos + seq_len])
                grabbed = True
        if not grabbed:
            break
        pos += seq_len
    return torch.tensor(windows)
