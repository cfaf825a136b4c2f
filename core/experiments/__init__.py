"""Experiments over whole matrices: how much of each one the model needs.

``truncation``: each matrix replaced by its top-k singular truncation (or k random
singular directions, or zero) and the loss recovered on reference text. ``knockout``:
the directions labelled interpretable deleted, against singular-value-matched and random
sets of the same size. ``probe``: a per-layer linear probe of the input token.
"""

from core.experiments.knockout import KnockoutOptions, KnockoutResult, knockout
from core.experiments.knockout_cache import cached_knockout
from core.experiments.probe import ProbeResult, probe_layers
from core.experiments.truncation import (
    DEFAULT_KS,
    TruncationCost,
    TruncationCurve,
    truncation_cost,
    truncation_curve,
    truncation_sweep,
)
from core.experiments.verdicts import label_missing, stored_verdicts

__all__ = [
    "DEFAULT_KS",
    "KnockoutOptions",
    "KnockoutResult",
    "ProbeResult",
    "TruncationCost",
    "TruncationCurve",
    "cached_knockout",
    "knockout",
    "label_missing",
    "probe_layers",
    "stored_verdicts",
    "truncation_cost",
    "truncation_curve",
    "truncation_sweep",
]
