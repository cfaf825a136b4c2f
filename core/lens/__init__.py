"""The logit lens and the directions a prompt uses, from one plain forward pass.

Modules: ``capture`` (the hooked forward pass), ``prompt`` (tokens, checks, the run),
``logit`` (the lens: each layer's prediction through the final norm and ``W_U``),
``active`` (the directions most active at a position, with the activation that
:mod:`core.activations.readers` defines).
"""

from core.lens.active import (
    RANKINGS,
    READ_KINDS,
    SIDES,
    WRITE_KINDS,
    ActiveDirection,
    PromptActivations,
    active_directions,
    direction_values,
    prompt_activations,
    with_tokens,
)
from core.lens.capture import Capture, capture
from core.lens.logit import LogitLens, logit_lens, next_token_targets, row_names
from core.lens.prompt import MAX_TOKENS, PromptRun, encode, run_prompt, target_token

__all__ = [
    "MAX_TOKENS",
    "RANKINGS",
    "READ_KINDS",
    "SIDES",
    "WRITE_KINDS",
    "ActiveDirection",
    "Capture",
    "LogitLens",
    "PromptActivations",
    "PromptRun",
    "active_directions",
    "capture",
    "direction_values",
    "encode",
    "logit_lens",
    "next_token_targets",
    "prompt_activations",
    "row_names",
    "run_prompt",
    "target_token",
    "with_tokens",
]
