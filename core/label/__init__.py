"""Labelling: is a direction's token set about one thing? An offline labeller
(MiniLM embeddings against a random-set null), an optional LLM labeller, and the
SQLite store both write to beside the manual labels. Each direction's two ends (top and
bottom) are labelled separately.
"""

from core.label.store import LabelRecord, LabelStore, Reading, labels_path, reading
from core.label.sweep import DirectionLabel, label_llm, label_offline, sweep_offline

__all__ = [
    "DirectionLabel",
    "LabelRecord",
    "LabelStore",
    "Reading",
    "label_llm",
    "label_offline",
    "labels_path",
    "reading",
    "sweep_offline",
]
