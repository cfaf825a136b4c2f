"""``label`` and ``label-export`` on a tiny checkpoint: JSON shape, store, control, LLM config."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from core.cli.main import main
from core.errors import SpecError
from core.label.store import LabelStore
from core.label.sweep import parse_layers


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_layers() -> None:
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("0, 2", 3) == [0, 2] and parse_layers("1-2", 4) == [1, 2]
    with pytest.raises(SpecError, match="out of range"):
        parse_layers("5", 3)
    with pytest.raises(SpecError, match="Cannot read"):
        parse_layers("x", 3)


def test_label_offline_stores_and_exports(capsys, checkpoints, tmp_path: Path) -> None:
    ckpt = str(checkpoints["gpt2"])
    base = ["--model", ckpt, "--device", "cpu", "--cache-dir", str(tmp_path)]
    concepts = tmp_path / "concepts.txt"
    concepts.write_text("# broad\nanimal\nfood\nnumber\ncolour\n\nfire\n")
    code, out, err = run(capsys, "label", *base, "--matrix", "mlp_in", "--layers", "all",
                         "--n", "3", "--k", "8", "--control", "--concepts", str(concepts),
                         "--json")  # fmt: skip
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 2 * 2 * 2 * 3  # (real + control) x 2 ends x 2 layers x 3 directions
    r = rows[0]
    assert {"matrix", "layer", "head", "index", "control", "end", "labeller", "interpretable",
            "label", "score", "tokens", "percentile"} <= set(r)  # fmt: skip
    assert {x["end"] for x in rows} == {"top", "bottom"}
    assert r["labeller"] == "offline" and r["matrix"] == "mlp_in" and len(r["tokens"]) == 8
    # A direction whose tokens are all byte pieces keeps none to name: label "", never
    # interpretable (the tiny tokenizer has many; the controls' draw decides how many).
    assert {x["label"] for x in rows} <= {"animal", "food", "number", "colour", "fire", ""}
    assert not any(x["interpretable"] for x in rows if x["label"] == "")
    assert sum(x["label"] != "" for x in rows) >= len(rows) // 2
    assert list((tmp_path / "labeller").glob("concepts-*.safetensors"))
    assert sum(x["control"] for x in rows) == 12
    with LabelStore.in_cache(tmp_path) as store:
        recs = store.query()
        assert len(recs) == 24 and {x.labeller for x in recs} == {"offline"}
        assert {x.control for x in recs} == {False, True}
        assert {x.end for x in recs} == {"top", "bottom"}
    # OV is per head: all heads by default, one with --head; one end with --ends
    code, out, err = run(capsys, "label", *base, "--matrix", "ov", "--layers", "1", "--head",
                         "2", "--n", "2", "--k", "8", "--concepts", str(concepts),
                         "--ends", "bottom", "--json")  # fmt: skip
    assert code == 0, err
    got = [(x["layer"], x["head"], x["end"]) for x in json.loads(out)]
    assert got == [(1, 2, "bottom"), (1, 2, "bottom")]
    code, out, err = run(capsys, "label-export", "--cache-dir", str(tmp_path), "--out",
                         str(tmp_path / "l.csv"), "--json")  # fmt: skip
    assert code == 0, err and json.loads(out)["rows"] == 26
    exported = list(csv.DictReader(io.StringIO((tmp_path / "l.csv").read_text())))
    assert len(exported) == 26 and {x["end"] for x in exported} == {"top", "bottom"}


def test_label_errors(capsys, checkpoints, tmp_path: Path, monkeypatch) -> None:
    ckpt = str(checkpoints["gpt2"])
    base = ["--model", ckpt, "--device", "cpu", "--cache-dir", str(tmp_path)]
    code, _, err = run(capsys, "label", *base, "--matrix", "mlp_in", "--layers", "7")
    assert code == 2 and "out of range" in err
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("SVDLENS_LLM_MODEL", raising=False)
    code, _, err = run(capsys, "label", *base, "--matrix", "mlp_in", "--labeller", "llm")
    assert code == 2 and "OPENAI_BASE_URL" in err
    code, _, err = run(capsys, "label-export", "--cache-dir", str(tmp_path / "x"), "--out", "y")
    assert code == 2 and "No labels" in err


def test_llm_estimate_only_sends_nothing(capsys, checkpoints, tmp_path: Path, monkeypatch) -> None:
    # port 9 (discard) is never contacted: --estimate-only stops before any request
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SVDLENS_LLM_MODEL", "m")
    code, out, err = run(capsys, "label", "--model", str(checkpoints["gpt2"]), "--device", "cpu",
                         "--cache-dir", str(tmp_path), "--matrix", "mlp_out", "--n", "4",
                         "--labeller", "llm", "--estimate-only", "--json")  # fmt: skip
    assert code == 0, err
    est = json.loads(out)["estimate"]
    assert est["sets"] == 16 and est["cached"] == 0 and est["requests"] >= 16
    assert "estimate" in err


def test_label_stats_calibrates_on_the_control(capsys, checkpoints, tmp_path: Path) -> None:
    ckpt = str(checkpoints["gpt2"])
    base = ["--model", ckpt, "--device", "cpu", "--cache-dir", str(tmp_path)]
    code, _, err = run(capsys, "label-stats", *base, "--json")
    assert code == 2 and "python -m core label" in err.strip().splitlines()[-1]
    code, out, err = run(capsys, "label", *base, "--matrix", "mlp_in", "--layers", "all",
                         "--n", "30", "--k", "8", "--control", "--json")  # fmt: skip
    assert code == 0, err
    labelled = json.loads(out)
    code, out, err = run(capsys, "label-stats", *base, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [row["end"] for row in rows] == ["top", "bottom"]
    for row in rows:
        mine = [x for x in labelled if x["end"] == row["end"]]
        real = [x["score"] for x in mine if not x["control"]]
        control = [x["score"] for x in mine if x["control"]]
        assert row["matrix"] == "mlp_in" and row["n"] == len(real) == 60 and row["rate"] == 0.05
        # The cut is one of the same end's control scores; the weights' share is counted
        # against it.
        assert any(abs(c - row["threshold"]) < 1e-3 for c in control)
        assert row["fraction"] == pytest.approx(
            sum(s > row["threshold"] for s in real) / len(real), abs=1e-4
        )
        assert row["n_control_heldout"] == len(control) - len(control) // 2
        assert row["gap_low"] <= row["gap"] <= row["gap_high"]
    code, out, err = run(capsys, "label-stats", *base, "--by-index", "--json")
    assert code == 0, err
    by_index = json.loads(out)
    assert sorted({(x["end"], x["index"]) for x in by_index}) == sorted(
        (e, i) for e in ("top", "bottom") for i in range(30)
    )
    code, _, err = run(capsys, "label-stats", *base, "--rate", "0.7")
    assert code == 2 and "--rate" in err
