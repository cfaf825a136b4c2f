"""``python -m core search`` on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli.main import main
from tests.core.cli import without_progress

KEYS = {
    "matrix", "layer", "head", "index", "singular_value", "cosine", "sign", "top", "p", "z",
    "significant",
}  # fmt: skip


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def base(checkpoints, tmp_path_factory) -> list[str]:
    cache = tmp_path_factory.mktemp("cache")
    return ["--model", str(checkpoints["gpt2"]), "--cache-dir", str(cache), "--device", "cpu"]


def test_json_ranked_matches(capsys, base) -> None:
    code, out, err = _run(capsys, "search", *base, "--query", "the, fire", "--threshold", "0.1",
                          "--top", "7", "--all", "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert 0 < len(rows) <= 7
    for r in rows:
        assert set(r) >= KEYS
        assert abs(r["cosine"]) >= 0.1
        assert r["end"] == ("top" if r["sign"] == "positive" else "bottom")
        assert (r["head"] is None) == (r["matrix"] != "ov")
        assert all(isinstance(t, str) and isinstance(v, float) for t, v in r["top"])
        assert 0 < r["p"] <= 1 and r["significant"] == (r["p"] <= 0.05)
    # The default (token) method ranks by its score; the cosine methods by |cosine|.
    score = [r["score"] for r in rows]
    assert score == sorted(score, reverse=True)
    code, out, _ = _run(capsys, "search", *base, "--query", "the, fire", "--embed", "pinv",
                        "--threshold", "0.1", "--all", "--json")  # fmt: skip
    rows = json.loads(out)
    cos = [abs(r["cosine"]) for r in rows]
    assert code == 0 and cos == sorted(cos, reverse=True)
    assert all(r["sign"] == ("positive" if r["cosine"] > 0 else "antipodal") for r in rows)


@pytest.mark.parametrize("embed", ["pinv", "embed", "ridge", "token"])
def test_matrices_embed_and_processing(capsys, base, embed: str) -> None:
    code, out, err = _run(capsys, "search", *base, "--query", "the", "--matrices", "mlp_out,ov",
                          "--embed", embed, "--processing", "raw", "--threshold", "0",
                          "--top", "50", "--all", "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 50
    assert {r["matrix"] for r in rows} <= {"ov", "mlp_out"}


def test_table_output(capsys, base) -> None:
    code, out, _ = _run(capsys, "search", *base, "--query", "the", "--all", "--top", "3")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["matrix", "layer", "head"] and len(lines) == 4
    assert "significant" in lines[0].split()


def test_without_all_only_significant_hits(capsys, base) -> None:
    _, out, _ = _run(capsys, "search", *base, "--query", "the, fire", "--top", "50", "--all",
                     "--json")  # fmt: skip
    every = json.loads(out)
    _, out, _ = _run(capsys, "search", *base, "--query", "the, fire", "--top", "50", "--json")
    kept = json.loads(out)
    assert kept == [r for r in every if r["significant"]]
    assert len(every) == 50 and len(kept) < 50


def test_no_significant_hit_is_said_in_one_sentence(capsys, base) -> None:
    # On this tiny random model no direction matches "fire" better than random words do.
    _, out, _ = _run(capsys, "search", *base, "--query", "fire", "--all", "--json")
    every = json.loads(out)
    assert every and not any(r["significant"] for r in every)
    code, out, err = _run(capsys, "search", *base, "--query", "fire", "--json")
    assert code == 0 and json.loads(out) == []
    best = max(r["score"] for r in every)
    assert "No direction matches significantly" in err and "Add --all to list them." in err
    assert f"the best score, {best:.3f}," in err
    assert f"p = {min(r['p'] for r in every):.3f} > 0.05" in err
    # With --all the hits are listed, and nothing is said.
    _, _, err = _run(capsys, "search", *base, "--query", "fire", "--all")
    assert "No direction matches" not in err


def test_nonsense_query_is_refused_in_one_sentence(capsys, base) -> None:
    code, out, err = _run(capsys, "search", *base, "--query", "qqqzzzxxyy", "--json")
    err = without_progress(err)
    assert code == 2 and out == ""
    assert err.startswith("error: 'qqqzzzxxyy' is not a known word") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--query", " , "], "--query is empty"),
        (["--query", "the", "--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--query", "the", "--top", "0"], "--top must be at least 1"),
        (["--query", "the", "--matrices", "ov,foo"], "Unknown matrix 'foo' in --matrices"),
        (["--query", "the", "--matrices", "mlp_gate"], "mlp_gate is not searchable"),
        (["--query", "the", "--embed", "nope"], "Argument --embed: invalid choice"),
    ],
)
def test_bad_arguments_exit_nonzero_with_one_sentence(
    capsys, base, args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "search", *base, *args, "--json")
    assert code == 2 and out == ""
    err = without_progress(err)
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and err.rstrip().endswith(".")


def test_missing_model_is_reported(capsys, tmp_path: Path) -> None:
    code, _, err = _run(capsys, "search", "--model", str(tmp_path / "nothing"), "--query", "x")
    err = without_progress(err)
    assert code == 2 and err.startswith("error: ")
