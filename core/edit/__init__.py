"""Weight editing: closed-form rank-one removals of singular directions, applied to a
copy of the model, and what they change (target log-probs, KL, loss, continuations).

Modules: ``rank_one`` (edits and their weight updates), ``hf`` (edited Hugging Face
copies, export), ``compare`` (a matrix's directions before and after), ``prompts``
(token ids and log-probs), ``rows`` (batch rows with their own updates), ``ablate``
(sweeps, planned once per matrix), ``specificity``, ``continuation``, ``from_search``
(edits from a semantic search), ``report`` (the target's shift, and all of it at once).
"""

from core.edit.ablate import (
    SweepPlan,
    SweepPlanJob,
    SweepPlans,
    SweepRow,
    plan_sweep,
    run_sweep,
    sweep,
)
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
    unedited_reference,
)

__all__ = [
    "EDIT_KINDS",
    "Comparison",
    "Edit",
    "EditReport",
    "EditSet",
    "EditedModel",
    "RankOne",
    "SweepPlan",
    "SweepPlanJob",
    "SweepPlans",
    "SweepRow",
    "TargetShift",
    "apply_edits",
    "compare",
    "export",
    "measure",
    "plan_sweep",
    "rank_one_updates",
    "reference_specificity",
    "run_sweep",
    "search_edits",
    "sweep",
    "target_shift",
    "unedited_reference",
]
