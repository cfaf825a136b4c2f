"""SVD lens: transformer weights read through their singular value decompositions.

The pipeline, one subpackage per stage, each importing only the stages before it::

    model/   load a checkpoint; one weight view for every architecture (families/)
    svd/     decompose each component; project its directions to tokens
    cache/   build once, store as safetensors + JSON, read back checked
    decompose/ beyond the SVD: sparse dictionaries, NMF, ICA, with random controls
    analysis the session object that ties the three together (open_analysis)
    random_control  its random Gaussian controls, built on first use
    query    one component's directions, from the cache or projected on demand
    search/  edit/  label/    what a researcher does with the directions
    activations/              dataset examples: where each direction fires in a corpus
    lens/    the logit lens of a prompt and the directions it uses
    bench/   cli/             timing the live paths; the command line on top

``core`` is pure computation and I/O and never imports streamlit. The names below are
the public surface; they load on first use, so ``import core.settings`` stays cheap.

Example::

    from core import Settings, open_analysis, directions
    a = open_analysis(Settings(model="default"))
    rows = directions(a, "ov", layer=3, head=1, n=5, k=10)
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Settings": "core.settings",
    "MATRIX_KINDS": "core.settings",
    "CoreError": "core.errors",
    "Analysis": "core.analysis",
    "open_analysis": "core.analysis",
    "analysis_from_weights": "core.analysis",
    "controls": "core.random_control",
    "control_decomposition": "core.random_control",
    "Direction": "core.query",
    "directions": "core.query",
    "method_directions": "core.query",
    "build_index": "core.search",
    "EditSet": "core.edit",
    "apply_edits": "core.edit",
    "measure": "core.edit",
    "load_corpus": "core.activations",
    "get_examples": "core.activations",
    "direction_examples": "core.activations",
    "run_prompt": "core.lens",
    "logit_lens": "core.lens",
    "active_directions": "core.lens",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
