"""Ablation sweeps: each of a matrix's first directions removed (or scaled) alone, and
what that does to the target's log-probability.

Directions are batched (:mod:`core.edit.rows`): batch row ``b`` runs the prompt with its
own rank-one update. A :class:`SweepPlan` holds the updates of a matrix's directions and
of their matched random draws, so every prompt and target reuses them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from dataclasses import dataclass

from core.analysis import Analysis
from core.background import BackgroundJob
from core.edit.baseline import (
    N_DRAWS,
    RandomBaseline,
    edit_set_updates,
    matched_draws,
    update_deltas,
)
from core.edit.hf import apply_edits, plain_model
from core.edit.prompts import prompt_ids, score, target_ids
from core.edit.rank_one import Edit, EditSet, RankOne, rank_one_updates, validate
from core.query import kind_result


@dataclass(frozen=True)
class SweepRow:
    """Direction ``index`` removed (or scaled) alone: the target's log-prob and its change."""

    index: int
    singular_value: float
    logprob: float
    delta_logprob: float


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep of one matrix applies, whatever the prompt and target: the rank-one
    update of each of its first directions alone, and each direction's matched random
    draws (:func:`core.edit.baseline.matched_draw`, one edit each) with their updates.

    Making it decomposes each drawn component in float64 (most of a sweep's time on an
    MLP matrix), so one plan serves every prompt and target.
    """

    kind: str
    layer: int
    head: int | None
    scale: float
    sigma: tuple[float, ...]
    updates: tuple[RankOne, ...]
    draws: tuple[tuple[EditSet, ...], ...]
    draw_updates: tuple[tuple[RankOne, ...], ...]

    def first(self, n: int) -> SweepPlan:
        """The plan of the first ``n`` directions alone: a direction's update and draws
        do not depend on how many were planned (each draw is seeded by its own edit).
        """
        return dataclasses.replace(
            self,
            sigma=self.sigma[:n],
            updates=self.updates[:n],
            draws=self.draws[:n],
            draw_updates=self.draw_updates[:n],
        )


def plan_sweep(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    n: int = 20,
    scale: float = 0.0,
    n_draws: int = N_DRAWS,
) -> SweepPlan:
    """The :class:`SweepPlan` of the first ``n`` directions of one matrix, removed (or
    scaled by ``scale``) alone, with ``n_draws`` matched draws each (0: none).
    """
    validate(analysis, [Edit(kind, layer, head, 0, scale)])
    d = kind_result(analysis, kind).decomposition
    c = d.index(layer, head)
    n = min(n, d.rank)
    edits = [Edit(kind, layer, head, i, scale) for i in range(n)]
    draws = [tuple(x for x in matched_draws(analysis, [e], n_draws) if len(x)) for e in edits]
    flat = edit_set_updates(analysis, [x.edits for row in draws for x in row])
    singles = iter(u for (u,) in flat)
    return SweepPlan(
        kind,
        layer,
        head,
        scale,
        sigma=tuple(float(s) for s in d.S[c, :n]),
        updates=tuple(rank_one_updates(analysis, edits)),
        draws=tuple(draws),
        draw_updates=tuple(tuple(next(singles) for _ in row) for row in draws),
    )


class SweepPlanJob(BackgroundJob):
    """:func:`plan_sweep` on its own thread, started before a page's forward passes so
    the plan's float64 decompositions run while the model loads (a non-daemon thread: an
    exiting interpreter waits for the plan rather than killing it inside torch).

    Attributes:
        done: set when the plan is made, or on an error.
        error: the exception that stopped it, if any (:meth:`result` raises it).
    """

    thread_name = "svd-lens-sweep-plan"
    daemon = False
    failure = "planning a sweep failed"

    def __init__(
        self, analysis: Analysis, kind: str, layer: int, head: int | None, n: int = 20
    ) -> None:
        self._args = (analysis, kind, layer, head, n)
        self.n = n  # as asked: a plan of a matrix with fewer directions holds them all
        self._plan: SweepPlan | None = None
        super().__init__()

    def _work(self) -> None:
        self._plan = plan_sweep(*self._args)

    def result(self) -> SweepPlan:
        """The plan, once made (waits for it); re-raises the error that stopped it."""
        self.wait()
        if self.error is not None:
            raise self.error
        assert self._plan is not None
        return self._plan


class SweepPlans:
    """One analysis's sweep plans, one per matrix, each on its own thread
    (:class:`SweepPlanJob`), for every page session together.

    A matrix keeps its largest plan: a sweep of fewer directions is its
    :meth:`SweepPlan.first` (on SmolLM2-135M an MLP plan of 16 directions takes about
    3 s, of 64 about 4.5 s), and only a larger one is planned again. A plan that failed
    is planned again on the next request for its matrix, and the other matrices' plans
    are kept; so are the ``kept`` matrices last asked for.
    """

    def __init__(self, analysis: Analysis, kept: int = 8) -> None:
        self._analysis = analysis
        self._kept = kept
        self._jobs: OrderedDict[tuple[str, int, int | None], SweepPlanJob] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, kind: str, layer: int, head: int | None, n: int) -> SweepPlanJob:
        """The job whose plan holds the first ``n`` directions of the matrix, started
        now unless a kept one already holds them.
        """
        key = (kind, layer, head)
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.n < n:
                job = SweepPlanJob(self._analysis, kind, layer, head, n).start()
                self._jobs[key] = job
            self._jobs.move_to_end(key)
            while len(self._jobs) > self._kept:
                self._jobs.popitem(last=False)  # a running job finishes unheld
            return job

    def plan(self, kind: str, layer: int, head: int | None, n: int) -> SweepPlan:
        """The plan of the first ``n`` directions (waits for it; raises its error)."""
        job = self.start(kind, layer, head, n)
        try:
            return job.result().first(n)
        except Exception:
            # Dropped once its error is shown, so the next request plans it again (not
            # in start: a page would retry at once and never show why it failed).
            with self._lock:
                if self._jobs.get((kind, layer, head)) is job:
                    del self._jobs[(kind, layer, head)]
            raise

    def __len__(self) -> int:
        return len(self._jobs)


def run_sweep(
    analysis: Analysis,
    plan: SweepPlan,
    prompt: str,
    target: str,
    edits: EditSet | None = None,
    batch: int = 16,
) -> tuple[list[SweepRow], list[RandomBaseline]]:
    """``plan``'s directions and draws, each applied alone on top of ``edits``: the
    target's log-prob and its change per direction, and each direction's draws' changes.
    """
    assert analysis.model is not None
    tok = analysis.model.tokenizer
    p, t = prompt_ids(tok, prompt), target_ids(tok, target, prompt)
    base = apply_edits(analysis, edits).model if edits else plain_model(analysis)
    before = score(base, p, t)  # also refuses a prompt past the context
    # The directions and their draws share batches: every row is one update.
    rows = [[u] for u in (*plan.updates, *(u for row in plan.draw_updates for u in row))]
    deltas = update_deltas(base, p, t, rows, before, batch)
    swept = [SweepRow(i, s, before + x, x) for i, (s, x) in enumerate(zip(plan.sigma, deltas))]
    rest = iter(deltas[len(plan.updates) :])
    baselines = [RandomBaseline(draws, tuple(next(rest) for _ in draws)) for draws in plan.draws]
    return swept, baselines


def sweep(
    analysis: Analysis,
    kind: str,
    layer: int,
    head: int | None,
    prompt: str,
    target: str,
    n: int = 20,
    scale: float = 0.0,
    edits: EditSet | None = None,
    batch: int = 16,
) -> list[SweepRow]:
    """For each of the first ``n`` directions of one matrix, remove it alone (or scale
    it by ``scale``) on top of ``edits``, and record the target's log-prob and its change.
    """
    plan = plan_sweep(analysis, kind, layer, head, n, scale, n_draws=0)
    return run_sweep(analysis, plan, prompt, target, edits, batch)[0]
