"""What the Edit page caches: one edited copy of the model per edit set, shared by the
report's three parts, each part on its own inputs, and one sweep plan per matrix.

The edited model (:func:`core.edit.apply_edits`, 0.25 s on SmolLM2-135M: a float64
decomposition of each edited component) is a shared read-only object
(``st.cache_resource``); nothing writes to it after it is made. The parts are
``st.cache_data``, so the target's shift is drawn while specificity and the
continuations run, and a new token count reruns only the continuations. The unedited
model's pass over the held-out text, half of each edit set's specificity, is kept once
per model (:func:`core.edit.unedited_reference`, 100 MB for SmolLM2-135M). A sweep's plan
(:func:`core.edit.plan_sweep`: its directions' and their random draws' updates, 2.4 s
for an MLP matrix of SmolLM2-135M) is shared too, so a new prompt or target reruns only
the sweep's batched forward passes, and fewer directions are a slice of a kept plan
(:class:`core.edit.SweepPlans`); it is made on its own thread, started before the
report, while the model loads.
"""

from __future__ import annotations

import streamlit as st
from core.edit import (
    EditedModel,
    EditSet,
    SweepPlans,
    SweepRow,
    TargetShift,
    apply_edits,
    unedited_reference,
)
from core.edit.baseline import RandomBaseline
from core.edit.specificity import ReferencePass, Specificity

from dashboard import config, state
from dashboard.builders import ablation as ab
from dashboard.builders import edit as eb
from dashboard.loaders import _load, _quiet

#: Matrices whose sweep plan is kept (for every session together): a 64-direction plan
#: of an MLP matrix holds 256 float64 update pairs, under 10 MB for SmolLM2-135M.
KEPT_PLANS = 8
#: Edit sets whose edited model is kept (for every session together): each owns only
#: its edited matrices and shares the rest with the loaded model.
KEPT_EDITS = 4


@st.cache_resource(show_spinner=False, max_entries=KEPT_EDITS)
def _edited(model: str, processing: str, cache_dir: str, spec: str) -> EditedModel:
    return apply_edits(_load(model, processing, cache_dir, _quiet), EditSet.parse(spec))


@st.cache_data(show_spinner="Measuring the target…", max_entries=128)
def _shift(
    model: str, processing: str, cache_dir: str, spec: str, prompt: str, target: str
) -> TargetShift:
    a = _load(model, processing, cache_dir, _quiet)
    return eb.compute_shift(a, _edited(model, processing, cache_dir, spec), prompt, target)


@st.cache_resource(show_spinner=False, max_entries=1)
def _reference(model: str, processing: str, cache_dir: str) -> ReferencePass:
    # The unedited model's pass over the held-out text (1.3 s of each edit set's 2.6 s
    # on SmolLM2-135M) for one model at a time: 512 tokens x the vocabulary in float32
    # is 100 MB for SmolLM2-135M or GPT-2.
    return unedited_reference(_load(model, processing, cache_dir, _quiet))


@st.cache_data(show_spinner="Measuring specificity on held-out text…", max_entries=64)
def _specificity(model: str, processing: str, cache_dir: str, spec: str) -> Specificity:
    a = _load(model, processing, cache_dir, _quiet)
    edited = _edited(model, processing, cache_dir, spec)
    return eb.compute_specificity(a, edited, _reference(model, processing, cache_dir))


@st.cache_data(show_spinner="Writing the continuation…", max_entries=128)
def _continuation(
    model: str, processing: str, cache_dir: str, spec: str, prompt: str, n: int
) -> str:
    a = _load(model, processing, cache_dir, _quiet)
    edited = _edited(model, processing, cache_dir, spec) if spec else None
    return eb.compute_continuation(a, edited, prompt, n)


def target_shift(sel: state.Selection, spec: str, prompt: str, target: str) -> TargetShift:
    """What the edits ``spec`` do to ``target`` after ``prompt``."""
    return _shift(sel.model, sel.processing, str(config.cache_dir()), spec, prompt, target)


def specificity(sel: state.Selection, spec: str) -> Specificity:
    """The edits' effect on the held-out reference text."""
    return _specificity(sel.model, sel.processing, str(config.cache_dir()), spec)


def continuation(sel: state.Selection, spec: str, prompt: str, n: int) -> str:
    """The greedy continuation of ``prompt`` (``n`` new tokens) with the edits ``spec``;
    ``""``: the unedited model's, one per prompt whatever the edits."""
    return _continuation(sel.model, sel.processing, str(config.cache_dir()), spec, prompt, n)


@st.cache_resource(show_spinner=False, max_entries=2)
def _plans(model: str, processing: str, cache_dir: str) -> SweepPlans:
    return SweepPlans(_load(model, processing, cache_dir, _quiet), KEPT_PLANS)


def start_sweep_plan(sel: state.Selection, component: tuple[str, int, int | None], n: int) -> None:
    """Start planning the sweep of ``component``'s first ``n`` directions in the
    background, unless a kept plan of the matrix holds them: the page calls it before its
    forward passes, so the plan's decompositions run while the model loads."""
    _plans(sel.model, sel.processing, str(config.cache_dir())).start(*component, n)


@st.cache_data(show_spinner="Removing each direction alone…", max_entries=128)
def _sweep(
    model: str,
    processing: str,
    cache_dir: str,
    kind: str,
    layer: int,
    head: int | None,
    n: int,
    prompt: str,
    target: str,
) -> tuple[list[SweepRow], list[RandomBaseline]]:
    a = _load(model, processing, cache_dir, _quiet)
    # A failed plan raises here and is dropped, so the next run plans it again.
    plan = _plans(model, processing, cache_dir).plan(kind, layer, head, n)
    return ab.compute_sweep(a, plan, prompt, target)


def sweep(
    sel: state.Selection,
    component: tuple[str, int, int | None],
    n: int,
    prompt: str,
    target: str,
) -> tuple[list[SweepRow], list[RandomBaseline]]:
    """The first ``n`` directions of ``component`` (kind, layer, head) each removed alone,
    with their matched random draws."""
    cdir = str(config.cache_dir())
    return _sweep(sel.model, sel.processing, cdir, *component, n, prompt, target)
