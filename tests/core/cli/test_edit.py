"""``python -m core edit``: JSON shapes, agreement with the library, bad specifications."""

from __future__ import annotations

import json

import pytest
import torch

import core.search.engine as engine
from core.cli.main import main
from core.edit.rank_one import EditSet
from tests.core.cli import without_progress

PROMPT = "the fire burned with hot"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("edit-cli-cache")


def _edit(checkpoints, cache, *extra: str, arch: str = "gpt2") -> list[str]:
    return [
        "edit",
        "--model",
        str(checkpoints[arch]),
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--prompt",
        PROMPT,
        *extra,
    ]


def test_remove_prints_the_report(capsys, checkpoints, cache, tmp_path):
    code, out, err = run(
        capsys,
        *_edit(checkpoints, cache, "--remove", "ov:1:2:0,mlp_in:0:3", "--target", " f", "--json"),
        "--export",
        str(tmp_path / "x"),
        "--max-new-tokens",
        "5",
    )
    assert code == 0, err
    rep = json.loads(out)
    for key in (
        "target_logprob_before",
        "target_logprob_after",
        "kl_reference",
        "continuation_before",
        "continuation_after",
    ):
        assert key in rep
    assert rep["kl_reference"] >= 0 and rep["edits"] == "ov:1:2:0,mlp_in:0:3"
    # Baselines: matched random draws, the target's rank, the other tokens' change.
    draws = rep["random_baseline"]["draws"]
    assert len(draws) == 3
    for d in draws:
        got = [(e.kind, e.index) for e in EditSet.parse(d["edits"])]
        assert got == [("ov", 0), ("mlp_in", 3)]
    assert rep["exceeds_random"] == (
        abs(rep["delta_logprob"]) > max(abs(d["delta_logprob"]) for d in draws)
    )
    assert 1 <= rep["target_rank_by_decrease"] <= rep["vocabulary_size"]
    assert rep["median_abs_delta_other_tokens"] >= 0
    assert (tmp_path / "x" / "config.json").is_file()


def test_sweep_agrees_with_single_removals(capsys, checkpoints, cache):
    code, out, err = run(
        capsys,
        *_edit(checkpoints, cache, "--sweep", "ov:1:2", "--n", "3", "--target", " f", "--json"),
        "--processing",
        "raw",
    )
    assert code == 0, err
    rows = json.loads(out)
    keys = {"index", "delta_logprob", "random_mean", "random_std", "random_deltas"}
    assert [set(r) for r in rows] == [keys | {"exceeds_random"}] * 3
    for r in rows:
        assert len(r["random_deltas"]) == 3
        assert r["exceeds_random"] == (
            abs(r["delta_logprob"]) > max(abs(x) for x in r["random_deltas"])
        )
    for r in rows:
        code, out, err = run(
            capsys,
            *_edit(checkpoints, cache, "--remove", f"ov:1:2:{r['index']}", "--target", " f"),
            "--processing",
            "raw",
            "--json",
            "--max-new-tokens",
            "0",
        )
        rep = json.loads(out)
        delta = rep["target_logprob_after"] - rep["target_logprob_before"]
        assert delta == pytest.approx(r["delta_logprob"], abs=1e-4)


def test_remove_search_removes_the_significant_hits(capsys, checkpoints, cache, monkeypatch):
    # A random model has no real matches: a null whose random bests all score -2 makes
    # the hits above it significant.
    from core.search.null import Null

    def fake(index, n, method, kinds, threshold, **_):
        return Null(method, n, threshold, tuple(kinds), torch.full((20,), -2.0))

    monkeypatch.setattr(engine, "null_for", fake)
    args = ["--remove-search", "fire, flames", "--threshold", "0.2", "--target", " f", "--json"]
    code, out, err = run(capsys, *_edit(checkpoints, cache, *args, "--max-new-tokens", "0",
                                        "--random-draws", "0"))  # fmt: skip
    assert code == 0, err
    rep = json.loads(out)
    assert rep["random_baseline"]["draws"] == [] and rep["exceeds_random"] is None
    code, out2, _ = run(
        capsys,
        "search",
        "--model",
        str(checkpoints["gpt2"]),
        "--device",
        "cpu",
        "--cache-dir",
        str(cache),
        "--query",
        "fire, flames",
        "--threshold",
        "0.2",
        "--top",
        "100000",
        "--all",
        "--json",
    )
    every = json.loads(out2)
    assert any(not h["significant"] for h in every)
    hits = [
        h
        for h in every
        if h["matrix"] in ("ov", "mlp_in", "mlp_gate", "mlp_out") and h["significant"]
    ]
    assert hits
    want = EditSet.from_components([(h["matrix"], h["layer"], h["head"], h["index"]) for h in hits])
    assert set(EditSet.parse(rep["edits"])) == set(want)
    code, _, err = run(
        capsys,
        *_edit(
            checkpoints, cache, "--remove-search", "fire", "--threshold", "1.0", "--target", " f"
        ),
    )
    assert code == 2 and "better than random queries of the same shape" in err


BAD = [
    (["--remove", "ov:1:2", "--target", " f"], "write ov:LAYER:HEAD:INDEX"),
    (["--remove", "ov:1:9:0", "--target", " f"], "Head 9 is out of range"),
    (["--remove", "ov:7:0:0", "--target", " f"], "Layer 7 is out of range"),
    (["--remove", "ov:1:0:16", "--target", " f"], "has no direction 16"),
    (["--remove", "mlp_gate:1:0", "--target", " f"], "has no gate"),
    (["--remove", "qk:1:0:0", "--target", " f"], "Cannot edit 'qk'"),
    (["--remove", "ov:1:0:0", "--target", ""], "target is empty"),
    (["--remove", "ov:1:0:0", "--target", " f", "--scale", "3"], "--scale must be between"),
    (["--sweep", "ov:1", "--target", " f"], "write ov:LAYER:HEAD"),
    (["--sweep", "ov:1:0", "--target", " f", "--export", "x"], "--export needs --remove"),
    (["--target", " f"], "One of the arguments"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_specifications_give_one_sentence(capsys, checkpoints, cache, extra, message):
    code, out, err = run(capsys, *_edit(checkpoints, cache, *extra))
    assert code == 2 and out == ""
    assert message in err, err
    err = without_progress(err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
