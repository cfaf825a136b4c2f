"""``python -m core knockout``: labels first when none are stored, its JSON, the cache
on a rerun, and its refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core.cli.main import main
from core.label.store import LabelStore


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_knockout_labels_then_runs_then_reads_the_cache(capsys, checkpoints, tmp_path):
    base = ("knockout", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path))
    opts = ("--matrices", "mlp_out", "--layers", "1", "--n-label", "6", "--draws", "2")
    code, out, err = _run(capsys, *base, *opts, "--json")
    with LabelStore.in_cache(tmp_path) as labels:
        recs = labels.query(matrix="mlp_out", labeller="offline")
    # Labelled first, both ends of each direction.
    assert [(r.layer, r.index, r.end) for r in recs] == [
        (1, i, e) for i in range(6) for e in ("top", "bottom")
    ]
    if not any(r.interpretable for r in recs):  # a random model may read as noise
        assert code == 2 and "labelled interpretable" in err
    # A person's verdict counts too, and overrides the offline one.
    with LabelStore.in_cache(tmp_path) as labels:
        labels.put(replace(r, labeller="manual", interpretable=r.index == 2) for r in recs)
    code, out, err = _run(capsys, *base, *opts, "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [s["set"] for s in res["sets"]] == ["interpretable", "matched", "random", "random"]
    assert res["deleted"]["interpretable"] == ["mlp_out:1:2"]
    assert all(s["n_deleted"] == 1 for s in res["sets"]) and not res["cached"]
    assert set(res["random"]["kl"]) == {"mean", "std", "min", "max"}
    code, out2, err = _run(capsys, *base, *opts, "--json")
    again = json.loads(out2)
    assert code == 0 and again["cached"] and again["sets"] == res["sets"]
    code, table, err = _run(capsys, *base, *opts)
    assert code == 0 and "interpretable" in table and "random 1" in table


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--matrices", "qk"], "Cannot knock out"),
        (["--matrices", ","], "Cannot knock out"),
        (["--draws", "99"], "--draws must be between"),
        (["--layers", "3-1"], "runs backwards"),
        (
            ["--labeller", "manual", "--matrices", "mlp_in", "--layers", "0"],
            "labelled interpretable",
        ),
    ],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, tmp_path, extra, message):
    code, _, err = _run(
        capsys,
        "knockout",
        "--model",
        str(checkpoints["gpt2"]),
        "--cache-dir",
        str(tmp_path),
        *extra,
    )
    assert code == 2 and message in err and "Traceback" not in err
