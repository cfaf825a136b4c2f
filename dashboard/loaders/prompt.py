"""What the Prompt page caches: one forward pass per prompt, shared by its lens and by
every cell's active directions, and the tables built from it.

A prompt's run (:func:`core.lens.run_prompt`) and its directions' activations at every
layer and position (:func:`core.lens.prompt_activations`) are shared read-only objects
(``st.cache_resource``): the lens, both sides' tables and every later click on a cell
read the same pass instead of running the model again. The tables are ``st.cache_data``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from core.lens import PromptActivations, PromptRun, prompt_activations, run_prompt

from dashboard import config, state
from dashboard.builders import prompt as pb
from dashboard.loaders import _load, _quiet

#: Prompts whose forward pass is kept (for every session together), and for how long:
#: a 128-token prompt's capture and activations are 51 and 42 MB on SmolLM2-135M,
#: and grow with layers x width; a prompt typed again after this reruns in about 1 s.
KEPT_RUNS = 4
KEPT_FOR_S = 600


@st.cache_resource(show_spinner=False, max_entries=KEPT_RUNS, ttl=KEPT_FOR_S)
def _run(model: str, processing: str, cache_dir: str, prompt: str) -> PromptRun:
    return run_prompt(_load(model, processing, cache_dir, _quiet), prompt)


@st.cache_resource(show_spinner=False, max_entries=KEPT_RUNS, ttl=KEPT_FOR_S)
def _activations(model: str, processing: str, cache_dir: str, prompt: str) -> PromptActivations:
    a = _load(model, processing, cache_dir, _quiet)
    return prompt_activations(a, _run(model, processing, cache_dir, prompt).capture)


@st.cache_data(show_spinner="Running the prompt…", max_entries=128)
def _lens(
    model: str, processing: str, cache_dir: str, prompt: str, target: str, k: int
) -> pd.DataFrame:
    a = _load(model, processing, cache_dir, _quiet)
    return pb.compute_lens(a, _run(model, processing, cache_dir, prompt), target, k)


@st.cache_data(show_spinner=False, max_entries=256)
def _lens_spec(
    model: str, processing: str, cache_dir: str, prompt: str, target: str, k: int, show: str
) -> dict[str, Any]:
    # Building and validating the heatmap took about 0.18 s; a picked cell only moves
    # the outline (pb.with_chosen), so one spec serves every cell.
    lens = _lens(model, processing, cache_dir, prompt, target, k)
    return pb.lens_heatmap(lens, show).to_dict(validate=False)


@st.cache_data(show_spinner="Finding the active directions…", max_entries=512)
def _active(
    model: str,
    processing: str,
    cache_dir: str,
    prompt: str,
    layer: int,
    position: int,
    side: str,
    n: int,
    k: int,
    by: str,
) -> pd.DataFrame:
    a = _load(model, processing, cache_dir, _quiet)
    acts = _activations(model, processing, cache_dir, prompt)
    return pb.compute_active(a, acts, layer, position, side, n, k, by)


def prompt_lens(sel: state.Selection, prompt: str, target: str = "", k: int = 5) -> pd.DataFrame:
    """:func:`dashboard.builders.prompt.compute_lens` of ``prompt`` (its forward pass
    run once and shared).

    Raises:
        CoreError: empty or too long prompt, empty target (one sentence).
    """
    return _lens(sel.model, sel.processing, str(config.cache_dir()), prompt, target, k)


def prompt_lens_spec(
    sel: state.Selection,
    prompt: str,
    target: str,
    k: int,
    show: str,
    chosen: tuple[int, int] | None,
) -> dict[str, Any]:
    """The Vega-Lite dict of :func:`dashboard.builders.prompt.lens_heatmap` over
    :func:`prompt_lens` with the ``chosen`` ``(position, row)`` outlined (render it with
    ``st.vega_lite_chart``)."""
    cdir = str(config.cache_dir())
    spec = _lens_spec(sel.model, sel.processing, cdir, prompt, target, k, show)
    return pb.with_chosen(spec, chosen)


def prompt_active(
    sel: state.Selection,
    prompt: str,
    layer: int,
    position: int,
    side: str,
    n: int = 10,
    k: int = 10,
    by: str = "activation",
) -> pd.DataFrame:
    """:func:`dashboard.builders.prompt.compute_active` at one cell of ``prompt``, from
    the same forward pass as its lens.

    Raises:
        CoreError: bad prompt, layer, position or side (one sentence).
    """
    cdir = str(config.cache_dir())
    return _active(sel.model, sel.processing, cdir, prompt, layer, position, side, n, k, by)
