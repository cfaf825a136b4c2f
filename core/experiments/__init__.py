"""Experiments over whole matrices: how much of each one the model needs.

``truncation``: each matrix replaced by its top-k singular truncation (or k random
singular directions, or zero) and the loss recovered on reference text.
"""

from core.experiments.probe import ProbeResult, probe_layers
from core.experiments.truncation import (
    DEFAULT_KS,
    TruncationCurve,
    truncation_curve,
    truncation_sweep,
)

__all__ = [
    "DEFAULT_KS",
    "ProbeResult",
    "TruncationCurve",
    "probe_layers",
    "truncation_curve",
    "truncation_sweep",
]
