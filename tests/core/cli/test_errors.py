"""Bad input on the command line: one sentence on stderr and exit status 2, never a
traceback, and nothing loaded or computed when the arguments alone are wrong."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.cli.main import main

Argv = Callable[[Path, Path], list[str]]


def _model(ckpt: Path, tmp: Path) -> list[str]:
    return ["--model", str(ckpt), "--device", "cpu", "--cache-dir", str(tmp / "cache")]


def _label(*extra: str) -> Argv:
    return lambda ckpt, tmp: ["label", *_model(ckpt, tmp), "--no-store", *extra]


def _edit(*extra: str) -> Argv:
    return lambda ckpt, tmp: [
        "edit", *_model(ckpt, tmp), "--prompt", "the fire", "--target", " hot", *extra,
    ]  # fmt: skip


def _directions(cache: Callable[[Path], str], *extra: str) -> Argv:
    return lambda ckpt, tmp: [
        "directions", "--model", str(ckpt), "--device", "cpu", "--cache-dir", cache(tmp),
        "--matrix", "ov", "--layer", "0", "--head", "0", *extra,
    ]  # fmt: skip


def _label_file(tmp: Path, test_strings: list[str], verdicts: list[str]) -> str:
    entries = {
        f"direction_{i}": {"test_string": t, "response": "fire", "verifier_response": v}
        for i, (t, v) in enumerate(zip(test_strings, verdicts))
    }
    p = tmp / "labels.json"
    p.write_text(json.dumps({"layer_0": entries}))
    return str(p)


def _read_only(tmp: Path) -> str:
    ro = tmp / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return str(ro / "cache")


def _a_file(tmp: Path) -> Path:
    f = tmp / "a_file"
    f.write_text("x")
    return f


is_root = hasattr(os, "geteuid") and os.geteuid() == 0

#: (case, argv from (checkpoint, tmp_path), words the sentence must contain)
CASES: list[tuple[str, Argv, str]] = [
    ("long --model", lambda c, t: ["directions", "--model", "a" * 5000, "--matrix", "ov",
                                   "--layer", "0", "--cache-dir", str(t)], "characters long"),
    ("--cache-dir is a file", _directions(lambda t: str(_a_file(t))), "is a file"),
    ("--cache-dir under /proc", _directions(lambda t: "/proc/svdlens-cache"), "Cannot write"),
    ("--cache-dir read-only", _directions(_read_only), "Cannot write"),
    ("edit --export onto a file", lambda c, t: _edit("--remove", "ov:0:0:0", "--export",
                                                     str(_a_file(t)))(c, t), "is a file"),
    ("edit --export under /proc", _edit("--remove", "ov:0:0:0", "--export", "/proc/svdlens"),
     "Cannot write"),
    ("edit --max-new-tokens huge", _edit("--remove", "ov:0:0:0", "--max-new-tokens", "100000"),
     "--max-new-tokens must be between"),
    ("label --concepts binary", _label("--matrix", "ov", "--concepts", "/bin/ls"),
     "not UTF-8 text"),
    ("label --n huge", _label("--matrix", "ov", "--n", "100000"), "--n must be between"),
    ("label --k huge", _label("--matrix", "ov", "--k", "100000"), "--k must be between"),
    ("label --layers huge range", _label("--matrix", "ov", "--layers", "0-1000000000"),
     "out of range"),
    ("label --layers backwards", _label("--matrix", "ov", "--layers", "3-1"), "runs backwards"),
    ("label --matrix mlp_gate without a gate", _label("--matrix", "mlp_gate"), "has no gate"),
    ("label-eval on a directory", lambda c, t: ["label-eval", "--data", str(t)], "Is a directory"),
    ("label-eval empty test_string",
     lambda c, t: ["label-eval", "--data", _label_file(t, ["fire, flames", ""], ["yes", "no"])],
     "empty test_string"),
    ("label-eval one class",
     lambda c, t: ["label-eval", "--data", _label_file(t, ["fire, hot", "ice, cold"],
                                                       ["yes", "yes"])], "AUC is undefined"),
    ("label-eval --threshold nan",
     lambda c, t: ["label-eval", "--threshold", "nan", "--data",
                   _label_file(t, ["fire, hot", "ice, cold"], ["yes", "no"])], "not nan"),
    ("search --threshold nan", lambda c, t: ["search", *_model(c, t), "--query", "fire",
                                             "--threshold", "nan"], "not nan"),
    ("label-export --out a folder",
     lambda c, t: ["label-export", "--cache-dir", str(t), "--out", str(t)], "is a folder"),
    ("label-export --out missing parent",
     lambda c, t: ["label-export", "--cache-dir", str(t), "--out", str(t / "no" / "x.csv")],
     "does not exist"),
    ("--device cuda without CUDA", _directions(lambda t: str(t), "--device", "cuda"), "CUDA"),
]  # fmt: skip

SKIP = {
    "--cache-dir read-only": (is_root, "root writes into read-only folders"),
    "--device cuda without CUDA": (torch.cuda.is_available(), "this machine has CUDA"),
}


def _param(case: str, argv: Argv, words: str) -> object:
    skip, reason = SKIP.get(case, (False, ""))
    return pytest.param(argv, words, id=case, marks=pytest.mark.skipif(skip, reason=reason))


@pytest.mark.parametrize(("argv", "words"), [_param(*c) for c in CASES])
def test_bad_input_gets_one_sentence(
    capsys, checkpoints, tmp_path: Path, argv: Argv, words: str
) -> None:
    code = main(argv(checkpoints["gpt2"], tmp_path))
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()  # progress lines may come first (a model load)
    assert [x for x in lines if x.startswith("error: ")] == lines[-1:], err
    sentence = lines[-1].removeprefix("error: ")
    assert sentence[0].isupper() or sentence.startswith("-"), sentence
    assert sentence.endswith(".") and words in sentence, sentence


def test_bad_arguments_fail_before_loading(tmp_path: Path, monkeypatch) -> None:
    """Limits are checked before the model is opened: a missing model never gets read."""
    import core.analysis

    def no_open(*_: object, **__: object) -> None:
        raise AssertionError("opened the model before checking the arguments")

    monkeypatch.setattr(core.analysis, "open_analysis", no_open)
    missing = ["--model", str(tmp_path / "missing"), "--cache-dir", str(tmp_path)]
    for argv in (
        ["label", *missing, "--matrix", "ov", "--layers", "3-1"],
        ["label", *missing, "--matrix", "ov", "--k", "100000"],
        ["label", *missing, "--matrix", "ov", "--concepts", "/bin/ls"],
        ["edit", *missing, "--remove", "ov:0:0:0", "--prompt", "a", "--target", " b",
         "--max-new-tokens", "100000"],
    ):  # fmt: skip
        assert main(argv) == 2


def test_the_error_stays_the_last_line_while_a_fill_goes_on(capsys) -> None:
    """A background fill that reports a stage after the command failed prints nothing,
    so the one-sentence error is the last line of stderr (a race seen in CI)."""
    from core.cli.common import log_progress, report_error, start_command

    start_command()
    fill = log_progress()
    fill(0.1, "background: projecting ov")
    report_error("The prompt is too long; shorten it.")
    fill(0.5, "background: projecting mlp_out")  # the fill thread, a moment later
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].endswith("background: projecting ov")
    assert lines[-1] == "error: The prompt is too long; shorten it."
    start_command()  # the next command prints its progress again
    fill(0.9, "background: writing")
    assert "background: writing" in capsys.readouterr().err
