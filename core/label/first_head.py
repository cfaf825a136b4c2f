"""Which head the dashboard opens on: the late-layer OV head whose first directions read
most like words.

The measure (cheap: token strings only, no embedding model): for each OV head of the
last third of the layers, take the first ``n`` directions' ``k`` strongest tokens at
both ends, as the grid shows them; its **word share** is the number of *distinct*
dictionary words among them (a token cleaned of its leading space, lower-cased, and
found whole in MiniLM's WordPiece vocabulary, :func:`core.label.embed.dictionary_words`)
divided by the number of tokens shown. Bytes, code fragments and sub-word pieces score
0, and case or spacing variants of one word (" since", "Since") count once, so a head
whose columns are lists of different words wins. Ties go to the later layer, then the
lower head. The choice is stored as JSON beside the model's cache entry.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.label.embed import clean_token, dictionary_words

#: Version of the measure; a stored choice from another version is recomputed.
MEASURE = "word-share-v1"


@dataclass(frozen=True)
class HeadChoice:
    """The head to open on, and why.

    Attributes:
        layer: its layer.
        head: its (query) head.
        score: its word share (0..1).
        measure: :data:`MEASURE` and its parameters.
    """

    layer: int
    head: int
    score: float
    measure: str


def word_share(tokens: Sequence[str], words: frozenset[str]) -> float:
    """Distinct dictionary words among ``tokens`` (raw strings) over ``len(tokens)``."""
    if not tokens:
        return 0.0
    found = {w for w in (clean_token(t).lower() for t in tokens) if w in words}
    return len(found) / len(tokens)


def first_head(analysis: Any, n: int = 8, k: int = 10, store: bool = True) -> HeadChoice:
    """The late-layer OV head with the highest word share (module docstring).

    Reads the stored choice when there is one for this model, processing, projection and
    measure.
    """
    from core.query import directions

    a = analysis
    measure = f"{MEASURE} n={n} k={k}"
    path = _path(a)
    if path is not None and path.is_file():
        try:
            got = HeadChoice(**json.loads(path.read_text()))
            if got.measure == measure:
                return got
        except (OSError, ValueError, TypeError):
            pass
    words = dictionary_words()
    m = a.meta
    first = m.n_layers - max(1, m.n_layers // 3)
    best: HeadChoice | None = None
    for layer in range(m.n_layers - 1, first - 1, -1):
        for head in range(m.n_heads):
            dirs = directions(a, "ov", layer, head, n=n, k=k)
            toks = [t for d in dirs for t, _, _ in (*d.top, *d.bottom)]
            score = word_share(toks, words)
            if best is None or score > best.score:
                best = HeadChoice(layer, head, score, measure)
    assert best is not None
    if store and path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(asdict(best)) + "\n")
        except OSError:
            pass  # a read-only cache only costs recomputing next time
    return best


def _path(a: Any) -> Path | None:
    if not getattr(a, "persist", True):
        return None
    name = f"{a.meta.weights_hash}-{a.settings.processing}-{a.settings.projection}.json"
    return Path(a.settings.cache_dir) / "first_head" / name
