"""``python -m core truncate``: its JSON and its refusals."""

from __future__ import annotations

import json

import pytest

from core.cli.main import main


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_truncate_json_runs_from_zero_to_full_rank(capsys, checkpoints, tmp_path):
    code, out, err = _run(
        capsys,
        *("truncate", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path)),
        *("--matrix", "mlp_out", "--layers", "1", "--ranks", "0,2", "--draws", "1", "--json"),
        *("--windows", "2"),
    )
    assert code == 0, err
    (row,) = json.loads(out)
    assert row["layer"] == 1 and row["k"][0] == 0 and row["k"][-1] == row["rank"]
    assert row["loss_recovered"][0] == 0.0 and row["loss_recovered"][-1] == 1.0
    assert len(row["loss_recovered_random"]) == len(row["k"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ranks", "a,b"], "Cannot read --ranks"),
        (["--ranks=-1,2"], "0 or more"),
        (["--draws", "99"], "--draws must be between"),
        (["--windows", "0"], "--windows must be between"),
        (["--matrix", "mlp_in", "--head", "1"], "has no heads"),
    ],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, extra, message):
    code, _, err = _run(capsys, "truncate", "--model", str(checkpoints["gpt2"]), *extra)
    assert code == 2 and message in err and "Traceback" not in err
