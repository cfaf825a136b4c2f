"""``python -m core compare-methods`` and ``directions --method``: their JSON and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.cli.main import main

FAST = ("--components", "16", "--iters", "2", "--max-rows", "200")


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_methods_json_has_every_method_and_control(capsys, checkpoints, tmp_path):
    code, out, err = _run(
        capsys,
        *("compare-methods", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path)),
        *("--matrix", "mlp_out", "--layer", "1", "--label", "0", "--no-curves", "--json"),
        *FAST,
    )
    assert code == 0, err
    rep = json.loads(out)
    have = {(p["method"], p["control"]) for p in rep["curves"]}
    for m in ("svd", "dictionary", "nmf"):
        assert (m, False) in have and (m, True) in have
    # The rank-r SVD points are the plain truncation error of W_out[1].
    from core.model.loading import load_model
    from core.model.source import raw_weights
    from core.settings import Settings

    W = raw_weights(load_model(Settings(model=str(checkpoints["gpt2"]), device="cpu"))).W_out[1]
    S = np.linalg.svd(W.double().numpy(), compute_uv=False)
    for p in rep["curves"]:
        if p["method"] == "svd" and not p["control"] and p["axis"] == "rank":
            want = float((S[p["x"] :] ** 2).sum() / (S**2).sum())
            assert p["fvu"] == pytest.approx(want, abs=1e-6)
    assert 0.0 <= rep["unseen_atoms"]["fraction"] <= 1.0
    assert rep["rays_vs_directions"]["top_directions"] == 32


def test_directions_method_json(capsys, checkpoints, tmp_path):
    code, out, err = _run(
        capsys,
        *("directions", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path)),
        *("--method", "dictionary", "--matrix", "embed", "--layer", "0", "--n", "3", "--json"),
        *FAST,
    )
    assert code == 0, err
    rows = json.loads(out)
    assert [r["index"] for r in rows] == [0, 1, 2] and len(rows[0]["top"]) == 20


@pytest.mark.parametrize(
    "extra, message",
    [
        (["directions", "--method", "nmf", "--matrix", "embed", "--layer", "0"], "nmf reads"),
        (
            ["directions", "--method", "ica", "--matrix", "embed", "--layer", "0", "--nnz", "0"],
            "nnz must be at least 1",
        ),  # fmt: skip
        (["compare-methods", "--matrix", "embed", "--threshold", "2"], "--threshold must be"),
    ],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, tmp_path, extra, message):
    code, _, err = _run(
        capsys, *extra, "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path)
    )
    assert code == 2 and message in err
