"""Weight editing: closed-form rank-one removals of singular directions, applied to a
copy of the model, and what they change (target log-probs, KL, loss, continuations).

Modules: ``rank_one`` (edits and their weight updates), ``hf`` (edited Hugging Face
copies, export), ``compare`` (a matrix's directions before and after), ``prompts``
(token ids and log-probs), ``ablate`` (sweeps), ``specificity``, ``continuation``,
``from_search`` (edits from a semantic search), ``report`` (the target's shift, and all of it at once).
"""

from core.edit.ablate import SweepRow, sweep
from core.edit.compare import Comparison, compare
from core.edit.from_search import search_edits
from core.edit.hf import EditedModel, apply_edits, export
from core.edit.rank_one import EDIT_KINDS, Edit, EditSet, RankOne, rank_one_updates
from core.edit.report import (
    EditReport,
    TargetShift,
    measure,
    reference_specificity,
    target_shift,
)

__all__ = [
    "EDIT_KINDS",
    "Comparison",
    "Edit",
    "EditReport",
    "EditSet",
    "EditedModel",
    "RankOne",
    "SweepRow",
    "TargetShift",
    "apply_edits",
    "compare",
    "export",
    "measure",
    "rank_one_updates",
    "reference_specificity",
    "search_edits",
    "sweep",
    "target_shift",
]
