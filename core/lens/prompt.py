"""A prompt through the model: its tokens, checked, and one hooked forward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.analysis import Analysis
from core.edit.hf import plain_model
from core.edit.prompts import context_length, target_ids
from core.errors import CoreError, SpecError
from core.lens.capture import Capture, capture

#: The longest prompt the lens reads, in tokens: every row of the lens is a
#: ``[pos, d_vocab]`` product, and a page shows one cell per layer and position.
MAX_TOKENS = 128


@dataclass(frozen=True)
class PromptRun:
    """One prompt's forward pass.

    Attributes:
        prompt: the text.
        ids: its token ids, with the tokenizer's usual special tokens (e.g. BOS).
        tokens: each token's readable form (the analysis's token table).
        capture: what the pass recorded.
    """

    prompt: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    capture: Capture


def encode(tokenizer: Any, prompt: str, n_ctx: int, max_tokens: int = MAX_TOKENS) -> list[int]:
    """Token ids of ``prompt`` (special tokens included), checked.

    Raises:
        SpecError: the prompt is empty, or longer than ``min(max_tokens, n_ctx)`` tokens.
    """
    if not prompt.strip():
        raise SpecError("The prompt is empty; type some text to run through the model.")
    ids = list(tokenizer(prompt)["input_ids"])
    cap = min(max_tokens, n_ctx)
    if len(ids) > cap:
        raise SpecError(
            f"The prompt is {len(ids)} tokens long; the lens reads at most {cap}, so shorten it."
        )
    if not ids:
        raise SpecError("The prompt has no tokens; type some text to run through the model.")
    return ids


def target_token(tokenizer: Any, target: str, prompt: str) -> int:
    """The first token of ``target`` as it follows ``prompt`` (mind the leading space).

    Raises:
        SpecError: the target is empty.
    """
    return target_ids(tokenizer, target, prompt)[0]


def run_prompt(analysis: Analysis, prompt: str, max_tokens: int = MAX_TOKENS) -> PromptRun:
    """Tokenize ``prompt`` and run the analysis's model on it once (loads the model if
    the analysis came from the cache alone).

    Raises:
        SpecError: empty or too long prompt (one sentence).
        CoreError: the analysis has no model.
    """
    if analysis.model is None:
        raise CoreError("This analysis has no model to run; open it with open_analysis.")
    model = plain_model(analysis)
    ids = encode(analysis.model.tokenizer, prompt, context_length(model), max_tokens)
    display = analysis.tokens.display
    tokens = tuple(display[i] if 0 <= i < len(display) else str(i) for i in ids)
    centre = analysis.meta.normalization == "LN"
    cap = capture(model, ids, analysis.settings.processing, centre)
    return PromptRun(prompt, tuple(ids), tokens, cap)
