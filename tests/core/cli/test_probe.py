"""``python -m core probe``: its JSON and its refusals."""

from __future__ import annotations

import json

import pytest

from core.cli.main import main


def test_probe_json_has_a_row_per_layer(capsys, checkpoints, tmp_path):
    text = tmp_path / "ref.txt"
    text.write_text("the cat and a dog ran across the green field to the old house " * 60)
    code = main(
        ["probe", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path / "c")]
        + ["--reference", str(text), "--windows", "8", "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    rows = json.loads(out)
    assert [r["layer"] for r in rows] == [0, 1]
    assert all(0 <= r["top1"] <= r["top10"] <= 1 for r in rows)


@pytest.mark.parametrize(
    "extra, message",
    [(["--classes", "1"], "--classes must be"), (["--windows", "100000"], "--windows must be")],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, extra, message):
    code = main(["probe", "--model", str(checkpoints["gpt2"]), *extra])
    _, err = capsys.readouterr()
    assert code == 2 and message in err
