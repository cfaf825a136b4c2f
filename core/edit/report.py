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
    set_deltas,
    vocabulary_shift,
)
from core.edit.continuation import continuation
from core.edit.hf import EditedModel, apply_edits, plain_model
from core.edit.prompts import default_reference, prompt_ids, score_and_next, target_ids
from core.edit.rank_one import Edit, EditSet
from core.edit.specificity import (
    ReferencePass,
    Specificity,
    reference_pass,
    specificity_from,
)


@dataclass(frozen=True)
class TargetShift:
    """What ``edits`` do to the target after ``prompt``.

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
    random: RandomBaseline = RandomBaseline((), ())
    target_rank: int = 0
    n_vocab: int = 0
    median_abs_delta: float = 0.0

    @property
    def delta(self) -> float:
        """``logprob_after - logprob_before``."""
        return self.logprob_after - self.logprob_before

    def to_json(self) -> dict[str, Any]:
        """Its part of the CLI's JSON form."""
        return {
            "edits": self.edits.spec(),
            "prompt": self.prompt,
            "target": self.target,
            "target_tokens": self.target_tokens,
            "target_logprob_before": self.logprob_before,
            "target_logprob_after": self.logprob_after,
            "delta_logprob": self.delta,
            "random_baseline": self.random.to_json(),
            "exceeds_random": self.random.exceeded_by(self.delta),
            "target_rank_by_decrease": self.target_rank,
            "vocabulary_size": self.n_vocab,
            "median_abs_delta_other_tokens": self.median_abs_delta,
        }


@dataclass(frozen=True)
class EditReport:
    """Everything ``python -m core edit`` prints for one set of edits: the target's
    shift, specificity on reference text, and greedy continuations before and after.
    """

    shift: TargetShift
    specificity: Specificity
    continuation_before: str
    continuation_after: str

    def to_json(self) -> dict[str, Any]:
        """The CLI's JSON form."""
        s = self.specificity
        return self.shift.to_json() | {
            "kl_reference": s.kl,
            "loss_before": s.loss_before,
            "loss_after": s.loss_after,
            "reference_tokens": s.n_tokens,
            "continuation_before": self.continuation_before,
            "continuation_after": self.continuation_after,
        }


def target_shift(
    analysis: Analysis,
    edited: EditedModel,
    prompt: str,
    target: str,
    random_draws: int = N_DRAWS,
) -> TargetShift:
    """The target's log-prob before and after ``edited.edits``, the same change for
    ``random_draws`` matched random edit sets, the target's rank by decrease and the
    other tokens' median change at the prompt's last position.
    """
    assert analysis.model is not None
    tok = analysis.model.tokenizer
    p, t = prompt_ids(tok, prompt), target_ids(tok, target, prompt)
    before = plain_model(analysis)
    # One pass per model gives both the target's log-prob and the last position's.
    logprob_before, lp0 = score_and_next(before, p, t)  # bad prompts fail here
    logprob_after, lp1 = score_and_next(edited.model, p, t)
    rank, median = vocabulary_shift(lp0, lp1, t[0])
    draws = [d for d in matched_draws(analysis, list(edited.edits), random_draws) if len(d)]
    # The draws run as rows of one batch on the unedited model (hooks), not as an edited
    # copy of the model each (0.4 s a copy on SmolLM2-135M).
    deltas = set_deltas(analysis, before, p, t, [d.edits for d in draws], logprob_before)
    return TargetShift(
        edits=edited.edits,
        prompt=prompt,
        target=target,
        target_tokens=[analysis.tokens.raw[i] for i in t],
        logprob_before=logprob_before,
        logprob_after=logprob_after,
        random=RandomBaseline(tuple(draws), tuple(deltas)),
        target_rank=rank,
        n_vocab=int(lp0.shape[0]),
        median_abs_delta=median,
    )


def unedited_reference(
    analysis: Analysis, reference: Int[Tensor, "n t"] | None = None
) -> ReferencePass:
    """The unedited model's :class:`~core.edit.specificity.ReferencePass` on ``reference``
    (token windows ``[n, t]``; default: the held-out text): one per model serves every
    edit's :func:`reference_specificity`.
    """
    assert analysis.model is not None
    before = plain_model(analysis)
    if reference is None:
        reference = default_reference(analysis.model.tokenizer, before)
    return reference_pass(before, reference)


def reference_specificity(
    analysis: Analysis,
    edited: EditedModel,
    reference: Int[Tensor, "n t"] | ReferencePass | None = None,
) -> Specificity:
    """:func:`~core.edit.specificity.specificity` of ``edited`` against the unedited model
    on ``reference``: token windows ``[n, t]`` (default: the held-out text), or the
    unedited model's pass on them (:func:`unedited_reference`).
    """
    if not isinstance(reference, ReferencePass):
        reference = unedited_reference(analysis, reference)
    return specificity_from(reference, edited.model)


def measure(
    analysis: Analysis,
    edits: EditSet | Iterable[Edit],
    prompt: str,
    target: str,
    reference: Int[Tensor, "n t"] | None = None,
    max_new_tokens: int = 20,
    random_draws: int = N_DRAWS,
) -> EditReport:
    """:func:`target_shift`, :func:`reference_specificity` on ``reference`` and greedy
    continuations of ``max_new_tokens``, before and after ``edits``.
    """
    assert analysis.model is not None
    edited = apply_edits(analysis, edits)
    shift = target_shift(analysis, edited, prompt, target, random_draws)
    tok = analysis.model.tokenizer
    return EditReport(
        shift=shift,
        specificity=reference_specificity(analysis, edited, reference),
        continuation_before=continuation(plain_model(analysis), tok, prompt, max_new_tokens),
        continuation_after=continuation(edited.model, tok, prompt, max_new_tokens),
    )
