"""Evaluate a labeller against a GPT-3 label file (the format of the post's public label set).

A file is a JSON object ``{"layer_i": {"direction_j": {"test_string": "tok, tok, ...",
"response": ..., "verifier_response": ...}}}``. The reference decision is *interpretable*
when the response names a shared theme (not "these words have no shared semantic
meaning") and the verifier answered yes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import SpecError

_NO_THEME = re.compile(r"no (shared|common|clear)|nothing in common|not (share|related)", re.I)
_KEY_NUM = re.compile(r"(\d+)$")


@dataclass(frozen=True)
class LabelledSet:
    """One direction of a label file with the reference decision."""

    layer: int
    index: int
    tokens: tuple[str, ...]
    response: str
    verifier: str
    interpretable: bool


@dataclass(frozen=True)
class EvalResult:
    """Agreement of scores with reference decisions.

    Attributes:
        n: directions scored.
        base_rate: share the reference calls interpretable.
        auc: ROC AUC of the score (NaN when the reference has only one class).
        accuracy: agreement of the labeller's yes/no with the reference.
        threshold: the score threshold behind the yes/no.
        baselines: AUC of trivial scores (share of alphabetic tokens, of dictionary words,
            mean word frequency).

    ``majority_accuracy`` is the accuracy of always answering the reference's more common
    class: the bar ``accuracy`` has to clear to mean anything.
    """

    n: int
    base_rate: float
    auc: float
    accuracy: float
    threshold: float
    baselines: dict[str, float]

    @property
    def majority_accuracy(self) -> float:
        return max(self.base_rate, 1.0 - self.base_rate)

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "auc": _finite(self.auc),
            "accuracy": round(self.accuracy, 4),
            "majority_accuracy": round(self.majority_accuracy, 4),
            "threshold": self.threshold,
            "base_rate": round(self.base_rate, 4),
            "baselines": {k: _finite(v) for k, v in self.baselines.items()},
        }


def _finite(x: float) -> float | None:
    """``x`` rounded for JSON, or ``None`` when undefined (NaN is not JSON)."""
    return None if math.isnan(x) else round(x, 4)


def split_test_string(text: str) -> tuple[str, ...]:
    """Tokens of a ``"tok, tok, ..."`` string (a token that is itself a comma survives)."""
    parts = text.split(", ")
    return tuple(p for p in (s.strip() for s in parts) if p)


def reference_decision(response: str, verifier: str) -> bool:
    """Interpretable: the response names a theme and the verifier said yes."""
    theme = bool(response.strip()) and not _NO_THEME.search(response)
    return theme and verifier.strip().lower().startswith("yes")


def _num(key: str) -> int:
    m = _KEY_NUM.search(key)
    return int(m.group(1)) if m else -1


def read_label_file(path: Path) -> list[LabelledSet]:
    """All directions of one label file, in layer and direction order.

    Raises:
        SpecError: the file is missing or not in the label-set format.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"Label file {path} does not exist; check the path.") from exc
    except OSError as exc:
        raise SpecError(
            f"Cannot read label file {path} ({exc.strerror or exc}); give a label-set JSON file."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(
            f"Label file {path} is not JSON; give a file in the label-set format."
        ) from exc
    if not isinstance(data, dict):
        raise SpecError(f"Label file {path} must hold a JSON object of layer_i entries.")
    out: list[LabelledSet] = []
    try:
        for lkey in sorted(data, key=_num):
            for dkey in sorted(data[lkey], key=_num):
                e = data[lkey][dkey]
                tokens = split_test_string(str(e["test_string"]))
                if not tokens:
                    raise SpecError(
                        f"Label file {path} has an empty test_string at {lkey}/{dkey}; "
                        "give every direction its tokens or remove it."
                    )
                resp, ver = str(e.get("response", "")), str(e.get("verifier_response", ""))
                out.append(
                    LabelledSet(
                        layer=_num(lkey),
                        index=_num(dkey),
                        tokens=tokens,
                        response=resp,
                        verifier=ver,
                        interpretable=reference_decision(resp, ver),
                    )
                )
    except (KeyError, TypeError, AttributeError) as exc:
        raise SpecError(
            f"Label file {path} is not in the label-set format "
            "(layer_i -> direction_j -> {test_string, response, verifier_response})."
        ) from exc
    if not out:
        raise SpecError(f"Label file {path} holds no directions; give a non-empty file.")
    return out


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """ROC AUC by the rank-sum formula (ties get average ranks); NaN (undefined) if one
    class is empty.
    """
    pairs = sorted(zip(scores, labels), key=lambda p: p[0])
    n_pos = sum(1 for _, y in pairs if y)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        rank_sum += avg * sum(1 for p in pairs[i : j + 1] if p[1])
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def evaluate(
    sets: Sequence[LabelledSet],
    scores: Sequence[float],
    decisions: Sequence[bool],
    threshold: float,
    baselines: dict[str, Sequence[float]] | None = None,
) -> EvalResult:
    """Compare a labeller's scores and yes/no decisions with the reference."""
    ref = [s.interpretable for s in sets]
    n = len(ref)
    return EvalResult(
        n=n,
        base_rate=sum(ref) / n,
        auc=roc_auc(scores, ref),
        accuracy=sum(1 for d, r in zip(decisions, ref) if d == r) / n,
        threshold=threshold,
        baselines={k: roc_auc(v, ref) for k, v in (baselines or {}).items()},
    )


def offline_scores(
    sets: Sequence[LabelledSet], labeller_factory: Callable[[Sequence[str]], Any]
) -> tuple[Any, list[Any]]:
    """Score ``sets`` with an offline labeller whose null vocabulary is the file's own tokens.

    ``labeller_factory(vocabulary)`` returns an :class:`~core.label.offline.OfflineLabeller`
    (the label files carry no tokenizer, so random sets are drawn from the pooled tokens).
    Returns the labeller and one :class:`~core.label.offline.CoherenceScore` per set
    (unnamed: the reference has no concept to compare with).
    """
    lab = labeller_factory([t for s in sets for t in s.tokens])
    return lab, lab.score_many([s.tokens for s in sets], name=False)


def evaluate_scores(
    sets: Sequence[LabelledSet], scores: Sequence[Any], threshold: float
) -> EvalResult:
    """:func:`evaluate` for offline scores (their ``z``), with the alphabetic, dictionary-word
    and word-frequency (mean Zipf frequency) baselines.
    """
    return evaluate(
        sets,
        [r.z for r in scores],
        [r.interpretable for r in scores],
        threshold,
        {
            "alpha_fraction": [r.alpha_fraction for r in scores],
            "word_fraction": [r.word_fraction for r in scores],
            "word_frequency": [r.word_frequency for r in scores],
        },
    )


def evaluate_offline(
    sets: Sequence[LabelledSet], labeller_factory: Callable[[Sequence[str]], Any]
) -> EvalResult:
    """Score ``sets`` offline (:func:`offline_scores`) and compare with the reference."""
    lab, scores = offline_scores(sets, labeller_factory)
    return evaluate_scores(sets, scores, lab.params.threshold_z)
