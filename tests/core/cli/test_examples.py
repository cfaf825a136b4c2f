"""``python -m core examples``: its JSON, the cached second answer, its refusals."""

from __future__ import annotations

import json

import pytest

from core.cli.main import main
from tests.core.activations.conftest import small_corpus


def _corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(d.__dict__) + "\n" for d in small_corpus().documents))
    return path


def test_examples_json_marks_the_token(capsys, checkpoints, tmp_path):
    args = ["examples", "--model", str(checkpoints["neox"]), "--cache-dir", str(tmp_path / "c")]
    args += ["--matrix", "ov", "--layer", "1", "--head", "2", "--index", "0", "--n", "3"]
    args += ["--side", "write", "--tokens", "50", "--corpus", str(_corpus(tmp_path)), "--json"]
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 0, err
    first = json.loads(out)
    assert first["side"] == "write" and first["n_tokens"] == 50
    assert len(first["top"]) == len(first["bottom"]) == 3
    values = [e["value"] for e in first["top"]]
    assert values == sorted(values, reverse=True)
    assert all(f"[[{e['token']}]]" in e["context"] for e in first["top"])
    assert sum(first["histogram"]["counts"]) == 50
    assert first["build_seconds"] > 0
    # The second answer comes from the cache.
    assert main(args) == 0
    again = json.loads(capsys.readouterr()[0])
    assert again["build_seconds"] == 0 and again["top"] == first["top"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--matrix", "mlp_out", "--layer", "0", "--index", "0", "--side", "read"], "side"),
        (["--matrix", "mlp_in", "--layer", "0", "--index", "999"], "--index must be below"),
        (["--matrix", "mlp_in", "--layer", "0", "--index", "0", "--tokens", "0"], "--tokens"),
        (["--matrix", "mlp_in", "--layer", "9", "--index", "0"], "layer"),
    ],
)
def test_bad_arguments_get_one_sentence(capsys, checkpoints, tmp_path, extra, message):
    code = main(
        ["examples", "--model", str(checkpoints["gpt2"]), "--cache-dir", str(tmp_path / "c")]
        + ["--corpus", str(_corpus(tmp_path)), "--tokens", "20", *extra]
    )
    _, err = capsys.readouterr()
    assert code == 2 and message in err, err
