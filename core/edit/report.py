"""One edit set measured end to end: the target's log-probability, specificity on
reference text and greedy continuations, before and after (``python -m core edit``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jaxtyping import Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.continuation import continuation
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import (
    context_length,
    reference_ids,
    reference_texts,
    target_ids,
    target_logprob,
)
from core.edit.rank_one import Edit, EditSet
from core.edit.specificity import Specificity, specificity


@dataclass(frozen=True)
class EditReport:
    """Everything ``python -m core edit`` prints for one set of edits."""

    edits: EditSet
    prompt: str
    target: str
    target_tokens: list[str]
    logprob_before: float
    logprob_after: float
    specificity: Specificity
    continuation_before: str
    continuation_after: str

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        s = self.specificity
        return {
            "edits": self.edits.spec(),
            "prompt": self.prompt,
            "target": self.target,
            "target_tokens": self.target_tokens,
            "target_logprob_before": self.logprob_before,
            "target_logprob_after": self.logprob_after,
            "delta_logprob": self.logprob_after - self.logprob_before,
            "kl_reference": s.kl,
            "loss_before": s.loss_before,
            "loss_after": s.loss_after,
            "reference_tokens": s.n_tokens,
            "continuation_before": self.continuation_before,
            "continuation_after": self.continuation_after,
        }


def measure(
    analysis: Analysis,
    edits: EditSet | Iterable[Edit],
    prompt: str,
    target: str,
    reference: Int[Tensor, "n t"] | None = None,
    max_new_tokens: int = 20,
) -> EditReport:
    """Target log-prob, specificity on ``reference`` (token windows ``[n, t]``; default:
    the held-out text) and greedy continuations, before and after ``edits``.
    """
    assert analysis.model is not None
    edits = edits if isinstance(edits, EditSet) else EditSet().add(*edits)
    tok = analysis.model.tokenizer
    t = target_ids(tok, target, prompt)
    before = plain_model(analysis)
    logprob_before = target_logprob(before, tok, prompt, target)  # bad prompts fail early
    after = apply_edits(analysis, edits).model
    if reference is None:
        reference = reference_ids(tok, reference_texts(), seq_len=min(64, context_length(before)))
    return EditReport(
        edits=edits,
        prompt=prompt,
        target=target,
        target_tokens=[analysis.tokens.raw[i] for i in t],
        logprob_before=logprob_before,
        logprob_after=target_logprob(after, tok, prompt, target),
        specificity=specificity(before, after, reference),
        continuation_before=continuation(before, tok, prompt, max_new_tokens),
        continuation_after=continuation(after, tok, prompt, max_new_tokens),
    )
