"""The projection-gap measurement: the high-norm share against a plain count, the rule
that picks the default, and the command on a tiny checkpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from core.analysis import analysis_from_weights
from core.cli.main import main
from core.label.projection import (
    MEAN_ROW,
    ProjectionGap,
    _mean_row,
    best_projection,
    high_norm_share,
)
from core.model.loading import load_model
from core.model.source import raw_weights
from core.settings import PROJECTIONS, Settings


def test_high_norm_share_counts_top_tokens_among_the_largest_norms(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    m = load_model(Settings(model=str(checkpoints["gpt2"]), device="cpu"))
    raw = raw_weights(m)
    s = Settings(device="cpu", k=6, n_project=5, kinds=("ov", "mlp_out"), projection="raw")
    a = analysis_from_weights(raw, m.tokenizer, s, use_cache=False)
    W = a.weights.W_U.double().numpy()
    norms = np.linalg.norm(W, axis=0)
    V = W.shape[1]
    high = set(np.argsort(-norms, kind="stable")[: int(V * 10 / 100)].tolist())
    # Plain count over every component at layer 1: top 4 tokens of the first 3 directions,
    # each direction's projection recomputed densely.
    d = a.svd.kinds["ov"].decomposition
    hits = total = 0
    for c, (layer, _) in enumerate(d.components):
        if layer != 1:
            continue
        for i in range(3):
            p = d.directions[c, :, i].double().numpy() @ W
            top = np.argsort(-p)[:4]
            hits += sum(int(t) in high for t in top)
            total += 4
    got = high_norm_share(a, "ov", [1], 3, 4, percent=10)
    assert total > 0 and math.isclose(got, hits / total)


def _row(p: str, matrix: str, gap: float) -> ProjectionGap:
    return ProjectionGap(p, matrix, 10, 0.5, 0.1, gap, gap - 0.1, gap + 0.1, 0.02)


def test_best_projection_is_the_largest_mean_gap() -> None:
    rows = []
    for p, gaps in zip(PROJECTIONS, ([0.3, 0.0], [0.1, 0.1], [0.2, 0.2])):
        blocks = [_row(p, m, g) for m, g in zip(("ov", "mlp_in"), gaps)]
        mean = _mean_row(p, blocks)
        assert mean.matrix == MEAN_ROW and math.isclose(mean.gap, sum(gaps) / 2)
        assert math.isnan(mean.gap_low) and mean.n == 20
        rows += [*blocks, mean]
    # raw has the single largest block gap; standardized the largest mean.
    assert best_projection(rows) == "standardized"
    assert best_projection([]) is None


def test_projection_gap_command(capsys, checkpoints: dict[str, Path], tmp_path: Path) -> None:
    args = ["projection-gap", "--model", str(checkpoints["gpt2"]), "--device", "cpu",
            "--cache-dir", str(tmp_path), "--kinds", "mlp_out", "--n", "3", "--k", "6",
            "--projections", "raw", "standardized", "--json"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [(r["projection"], r["matrix"]) for r in rows] == [
        ("raw", "mlp_out"),
        ("raw", MEAN_ROW),
        ("standardized", "mlp_out"),
        ("standardized", MEAN_ROW),
    ]
    assert all(r["n"] == 2 * 3 for r in rows)  # two layers, three directions
    assert out["best"] in ("raw", "standardized")
    # Nothing was written to the cache but the labeller's concept embeddings.
    assert not [p for p in tmp_path.rglob("*.safetensors") if "labeller" not in p.parts]
