"""What the Compare page caches: two models' matched directions, a checkpoint series'
trajectory, and the embedding dictionary through a series (JSON, shared by sessions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import streamlit as st
from core.analysis import Analysis, open_analysis
from core.query import directions
from core.settings import Processing, Settings

from dashboard import config
from dashboard.loaders import _load, _quiet


def _series_analysis(model: str, processing: str, cache_dir: str) -> Analysis:
    """One checkpoint of a series, opened without a shared slot (a series is longer than
    the slots kept); its cache entry is built if missing."""
    config.check_model(model)
    settings = Settings(
        model=model, processing=cast(Processing, processing), cache_dir=Path(cache_dir)
    )
    return open_analysis(settings)


def _tops(a: Analysis, kind: str, layer: int, head: int | None, k: int = 6) -> list[list[str]]:
    rank = a.svd.kinds[kind].decomposition.rank
    return [[t for _, t, _ in d.top] for d in directions(a, kind, layer, head, n=rank, k=k)]


@st.cache_data(show_spinner=False, max_entries=64)
def compare_match(
    model_a: str,
    model_b: str,
    processing: str,
    cache_dir: str,
    kind: str,
    layer: int,
    head: int | None,
) -> dict[str, Any]:
    """:func:`core.compare.match_component` of two models as JSON, with the ``|cos|``
    matrix (``cos``) and both sides' top tokens (``tops_a``, ``tops_b``).

    Raises:
        CoreError: a model cannot be opened, or the two do not share a tokenizer.
    """
    from core.compare import match_component

    a = _load(model_a, processing, cache_dir, _quiet)
    b = _load(model_b, processing, cache_dir, _quiet)
    m = match_component(a, b, kind, layer, head)
    out = m.to_json()
    out["cos"] = m.cos.abs().tolist()
    out["tops_a"], out["tops_b"] = _tops(a, kind, layer, head), _tops(b, kind, layer, head)
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def compare_series(
    models: tuple[str, ...],
    processing: str,
    cache_dir: str,
    kind: str,
    layer: int,
    head: int | None,
) -> dict[str, Any]:
    """:func:`core.compare.series` through ``models`` as JSON, with the kind's drift map
    (``drift``, ``components``) and mean spectra over training (``kind_spectra``).

    Raises:
        CoreError: a checkpoint cannot be opened, or they do not share a tokenizer.
    """
    from core.compare import drift, kind_spectra, series

    from dashboard.builders.names import component_label

    analyses = [_series_analysis(m, processing, cache_dir) for m in models]
    out = series(analyses, kind, layer, head, n_tokens=6).to_json()
    out["drift"] = drift(analyses, kind).tolist()
    comps = analyses[-1].svd.kinds[kind].decomposition.components
    out["components"] = [component_label(kind, c[0], c[1]) for c in comps]
    out["kind_spectra"] = kind_spectra(analyses, kind).tolist()
    return out


@st.cache_data(show_spinner=False, max_entries=16)
def compare_dictionary(
    models: tuple[str, ...], processing: str, cache_dir: str
) -> list[dict[str, Any]]:
    """:func:`core.compare.dictionary_series` through ``models`` as JSON (each build is
    cached in its checkpoint's entry; the first costs seconds per checkpoint)."""
    from core.compare import dictionary_series

    analyses = [_series_analysis(m, processing, cache_dir) for m in models]
    return [p.to_json() for p in dictionary_series(analyses)]
