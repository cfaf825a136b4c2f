"""One edit set measured end to end: the target's log-probability, specificity on
reference text and greedy continuations, before and after (``python -m core edit``),
with its baselines (:mod:`core.edit.baseline`): matched random edits, the target's rank
among all tokens by decrease, and how much the other tokens moved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jaxtyping import Int
from torch import Tensor

from core.analysis import Analysis
from core.edit.baseline import (
    N_DRAWS,
    RandomBaseline,
    matched_draws,
    next_token_logprobs,
    set_deltas,
    vocabulary_shift,
)
from core.edit.continuation import continuation
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import (
    context_length,
    prompt_ids,
    reference_ids,
    reference_texts,
    target_ids,
    target_logprob,
)
from core.edit.rank_one import Edit, EditSet
from core.edit.specificity import Specificity, specificity


@dataclass(frozen=True)
class EditReport:
    """Everything ``python -m core edit`` prints for one set of edits.

    ``random`` holds the matched random draws; ``target_rank`` is the rank of the
    target's first token among all ``n_vocab`` tokens by decrease of its log-prob at the
    prompt's last position (1: decreased most); ``median_abs_delta`` is the median
    ``|Δ log p|`` of the other tokens there (nats).
    """

    edits: EditSet
    prompt: str
    target: str
    target_tokens: list[str]
    logprob_before: float
    logprob_after: float
    specificity: Specificity
    continuation_before: str
    continuation_after: str
    random: RandomBaseline = RandomBaseline((), ())
    target_rank: int = 0
    n_vocab: int = 0
    median_abs_delta: float = 0.0

    @property
    def delta(self) -> float:
        """``logprob_after - logprob_before``."""
        return self.logprob_after - self.logprob_before

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
            "random_baseline": self.random.to_json(),
            "exceeds_random": self.random.exceeded_by(self.delta),
            "target_rank_by_decrease": self.target_rank,
            "vocabulary_size": self.n_vocab,
            "median_abs_delta_other_tokens": self.median_abs_delta,
        }


def measure(
    analysis: Analysis,
    edits: EditSet | Iterable[Edit],
    prompt: str,
    target: str,
    reference: Int[Tensor, "n t"] | None = None,
    max_new_tokens: int = 20,
    random_draws: int = N_DRAWS,
) -> EditReport:
    """Target log-prob, specificity on ``reference`` (token windows ``[n, t]``; default:
    the held-out text) and greedy continuations, before and after ``edits``; the same
    target measurement for ``random_draws`` matched random edit sets; the target's rank
    by decrease and the other tokens' median change at the prompt's last position.
    """
    assert analysis.model is not None
    edits = edits if isinstance(edits, EditSet) else EditSet().add(*edits)
    tok = analysis.model.tokenizer
    t = target_ids(tok, target, prompt)
    before = plain_model(analysis)
    logprob_before = target_logprob(before, tok, prompt, target)  # bad prompts fail early
    after = apply_edits(analysis, edits).model
    logprob_after = target_logprob(after, tok, prompt, target)
    if reference is None:
        reference = reference_ids(tok, reference_texts(), seq_len=min(64, context_length(before)))
    p = prompt_ids(tok, prompt)
    lp0, lp1 = next_token_logprobs(before, p), next_token_logprobs(after, p)
    rank, median = vocabulary_shift(lp0, lp1, t[0])
    draws = [d for d in matched_draws(analysis, list(edits), random_draws) if len(d)]
    # The draws run as rows of one batch on the unedited model (hooks), not as an edited
    # copy of the model each (0.4 s a copy on SmolLM2-135M).
    deltas = set_deltas(analysis, before, p, t, [d.edits for d in draws], logprob_before)
    return EditReport(
        edits=edits,
        prompt=prompt,
        target=target,
        target_tokens=[analysis.tokens.raw[i] for i in t],
        logprob_before=logprob_before,
        logprob_after=logprob_after,
        specificity=specificity(before, after, reference),
        continuation_before=continuation(before, tok, prompt, max_new_tokens),
        continuation_after=continuation(after, tok, prompt, max_new_tokens),
        random=RandomBaseline(tuple(draws), tuple(deltas)),
        target_rank=rank,
        n_vocab=int(lp0.shape[0]),
        median_abs_delta=median,
    )
