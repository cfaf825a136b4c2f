"""Weight editing: closed-form rank-one removals of singular directions, applied to a
copy of the model, and what they change (target log-probs, KL, loss, continuations)."""

from core.edit.compare import Comparison
from core.edit.hf import EditedModel, apply_edits, export
from core.edit.measure import EditReport, SweepRow, measure, search_edits, sweep
from core.edit.rank_one import EDIT_KINDS, Edit, EditSet, RankOne, rank_one_updates

__all__ = [
    "EDIT_KINDS",
    "Comparison",
    "Edit",
    "EditReport",
    "EditSet",
    "EditedModel",
    "RankOne",
    "SweepRow",
    "apply_edits",
    "export",
    "measure",
    "rank_one_updates",
    "search_edits",
    "sweep",
]
