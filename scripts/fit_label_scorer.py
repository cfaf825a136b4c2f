#!/usr/bin/env python
"""Fit the offline labeller's scorer (``core/label/data/scorer.json``) on GPT-3 label files.

Usage::

    .venv/bin/python scripts/fit_label_scorer.py --fit small_in.json small_out.json \\
        [--check medium_in.json medium_out.json] [--write]

Each file is scored by the offline labeller (its embedding statistic's ``coherence_z``
against random sets of the file's own tokens, and the token-quality features of
:mod:`core.label.scorer`); an L2-regularised logistic regression (scikit-learn, C = 1)
of the reference decision on those features, pooled over the ``--fit`` files, gives the
coefficients. Prints the fit and the ROC AUC of the fitted logit on every file (the
``--check`` files are held out); ``--write`` stores it, with its provenance, in
``core/label/data/scorer.json``. Only this script fits; the labeller reads the constants.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from sklearn.linear_model import LogisticRegression

from core.label.evaluate import read_label_file, roc_auc
from core.label.offline import OfflineLabeller, OfflineParams, load_embedder
from core.label.scorer import SCORER_FILE, Scorer


def features(path: Path, emb: object) -> tuple[np.ndarray, np.ndarray]:
    sets = read_label_file(path)
    lab = OfflineLabeller(emb, [t for s in sets for t in s.tokens], OfflineParams())  # type: ignore[arg-type]
    scores = lab.score_many([s.tokens for s in sets], name=False)
    x = np.array(
        [[r.coherence_z, r.features.common_share, r.features.repeat_share] for r in scores]
    )
    return x, np.array([s.interpretable for s in sets])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fit", type=Path, nargs="+", required=True, help="tuning label files")
    ap.add_argument("--check", type=Path, nargs="*", default=[], help="held-out label files")
    ap.add_argument("--write", action="store_true", help=f"write {SCORER_FILE.name}")
    args = ap.parse_args()
    emb = load_embedder("cpu")
    data = {p: features(p, emb) for p in [*args.fit, *args.check]}
    x = np.vstack([data[p][0] for p in args.fit])
    y = np.concatenate([data[p][1] for p in args.fit])
    model = LogisticRegression(C=1.0, max_iter=1000).fit(x, y)
    coefs = tuple(round(float(c), 3) for c in model.coef_[0])
    intercept = round(float(model.intercept_[0]), 3)
    aucs = {}
    for p, (xp, yp) in data.items():
        logit = xp @ np.array(coefs) + intercept
        aucs[p.stem] = round(roc_auc(logit.tolist(), yp.tolist()), 3)
    scorer = Scorer(
        intercept,
        coefs,
        {
            "fitted_on": [p.stem for p in args.fit],
            "held_out": [p.stem for p in args.check],
            "method": "scikit-learn LogisticRegression(C=1.0) on the features, pooled over "
            "the fitted files; reference: interpretable = a theme named and the verifier "
            "said yes (core.label.evaluate.reference_decision)",
            "params": "OfflineParams() defaults (form_weight 0.25, chosen on the GPT-2 small files)",
            "auc_of_logit": aucs,
            "script": "scripts/fit_label_scorer.py",
        },
    )
    print(json.dumps(scorer.to_json(), indent=2))
    if args.write:
        SCORER_FILE.write_text(json.dumps(scorer.to_json(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
