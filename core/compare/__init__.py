"""Across models and checkpoints: match one component's directions between two models
that share a tokenizer (:mod:`core.compare.match`), and follow them through a series of
checkpoints (:mod:`core.compare.trajectory`), with the embedding's sparse dictionary at each
(:mod:`core.compare.dictionary_series`).
"""

from core.compare.dictionary_series import DictionaryPoint, dictionary_series
from core.compare.match import Match, check_same_tokenizer, match_component, token_images
from core.compare.trajectory import Trajectory, drift, kind_spectra, list_checkpoints, series

__all__ = [
    "DictionaryPoint",
    "dictionary_series",
    "Match",
    "Trajectory",
    "check_same_tokenizer",
    "drift",
    "kind_spectra",
    "list_checkpoints",
    "match_component",
    "series",
    "token_images",
]
