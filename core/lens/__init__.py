"""The logit lens and the directions a prompt uses, from one plain forward pass.

Modules: ``capture`` (the hooked forward pass), ``prompt`` (tokens, checks, the run),
``logit`` (the lens: each layer's prediction through the final norm and ``W_U``),
``active`` (each direction's activation at a position; its definition is in that
module's docstring and the README).
"""

from core.lens.active import (
    READ_KINDS,
    SIDES,
    WRITE_KINDS,
    ActiveDirection,
    active_directions,
    direction_values,
    with_tokens,
)
from core.lens.capture import Capture, capture
from core.lens.logit import LogitLens, logit_lens, next_token_targets, row_names
from core.lens.prompt import MAX_TOKENS, PromptRun, encode, run_prompt, target_token

__all__ = [
    "MAX_TOKENS",
    "READ_KINDS",
    "SIDES",
    "WRITE_KINDS",
    "ActiveDirection",
    "Capture",
    "LogitLens",
    "PromptRun",
    "active_directions",
    "capture",
    "direction_values",
    "encode",
    "logit_lens",
    "next_token_targets",
    "row_names",
    "run_prompt",
    "target_token",
    "with_tokens",
]
