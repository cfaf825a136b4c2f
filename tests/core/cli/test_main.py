"""The command line: JSON shape, agreement with a dense reference, bad arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.main import main
from tests.core import reference as ref
from tests.core.cli import without_progress
from tests.tiny_models import save_checkpoint

ROOT = Path(__file__).resolve().parents[3]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def unseen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Checkpoints with a seed no other test uses."""
    root = tmp_path_factory.mktemp("unseen")
    return {a: save_checkpoint(a, root / a, seed=1234) for a in ("gpt2", "neox", "llama")}


@pytest.mark.parametrize("arch", ["gpt2", "neox", "llama"])
def test_directions_json_agrees_with_dense_reference(capsys, unseen, tmp_path, arch: str) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(unseen[arch]).eval()
    W_U = ref.unembed(hf)
    cases = [("ov", 1, 3), ("mlp_out", 0, None), ("mlp_in", 1, None)]
    for kind, layer, head in cases:
        args = [
            "directions",
            "--model",
            str(unseen[arch]),
            "--matrix",
            kind,
            "--layer",
            str(layer),
            "--n",
            "4",
            "--k",
            "5",
            "--processing",
            "raw",
            "--device",
            "cpu",
            "--cache-dir",
            str(tmp_path),
            "--json",
        ]
        if head is not None:
            args += ["--head", str(head)]
        code, out, err = run(capsys, *args)
        assert code == 0, err
        rows = json.loads(out)
        W = ref.ov_matrix(hf, layer, head) if kind == "ov" else ref.mlp_matrix(hf, kind, layer)
        S, vecs = ref.token_side(kind, W)
        vocab = {}
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(unseen[arch])
        assert len(rows) == 4
        for row in rows:
            assert set(row) >= {"index", "singular_value", "top", "bottom"}
            i = row["index"]
            assert row["singular_value"] == pytest.approx(float(S[i]), rel=1e-4)
            assert len(row["top"]) == 5 and len(row["bottom"]) == 5
            assert (
                row["top"][0][1] >= row["top"][-1][1]
                and row["bottom"][0][1] <= row["bottom"][-1][1]
            )
            if row.get("degenerate"):
                continue
            ends = ref.end_sets(vecs[:, i] @ W_U, 5)
            want = {frozenset(tok.decode([j]) for j in e) for e in ends}
            vocab = {frozenset(t for t, _ in row["top"]), frozenset(t for t, _ in row["bottom"])}
            # Byte tokens are rendered, not decoded to U+FFFD; compare only decodable ends.
            if any("\ufffd" in t for e in want for t in e):
                continue
            assert vocab == want, (kind, i)


BAD = [
    (["--matrix", "nope", "--layer", "0"], "invalid choice"),
    (["--matrix", "ov", "--layer", "9", "--head", "0"], "Layer 9 is out of range"),
    (["--matrix", "ov", "--layer", "0", "--head", "7"], "Head 7 is out of range"),
    (["--matrix", "ov", "--layer", "0"], "give --head"),
    (["--matrix", "mlp_in", "--layer", "0", "--head", "1"], "has no heads"),
    (["--matrix", "mlp_gate", "--layer", "0"], "has no gate"),
    (["--matrix", "ov", "--layer", "0", "--head", "0", "--k", "0"], "--k must be at least 1"),
    (["--matrix", "ov", "--layer", "x"], "invalid int value"),
]


@pytest.mark.parametrize("extra,message", BAD)
def test_bad_arguments_give_one_sentence(capsys, checkpoints, tmp_path, extra, message) -> None:
    code, out, err = run(
        capsys,
        "directions",
        "--model",
        str(checkpoints["gpt2"]),
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path),
        *extra,
    )
    assert code != 0 and out == ""
    assert message in err
    err = without_progress(err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_missing_model_says_what_to_do(capsys, tmp_path) -> None:
    code, _, err = run(
        capsys,
        "directions",
        "--model",
        str(tmp_path / "nowhere"),
        "--matrix",
        "ov",
        "--layer",
        "0",
        "--head",
        "0",
    )
    assert code == 2 and "No directory" in err
    code, _, err = run(
        capsys,
        "directions",
        "--model",
        "surely-not/a-cached-model",
        "--matrix",
        "ov",
        "--layer",
        "0",
        "--head",
        "0",
    )
    assert code == 2 and "hf download" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "precompute", "--model", str(tmp_path / "empty"))
    assert code == 2 and "config.json" in err


def test_precompute_then_module_entry_point(checkpoints, tmp_path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [
        sys.executable,
        "-m",
        "core",
        "precompute",
        "--model",
        str(checkpoints["neox"]),
        "--device",
        "cpu",
        "--cache-dir",
        str(tmp_path),
        "--json",
    ]
    first = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["from_cache"] is False and "ov" in info["kinds"] and "mlp_gate" not in info["kinds"]
    second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert json.loads(second.stdout)["from_cache"] is True


def test_precompute_builds_controls_only_when_asked(capsys, checkpoints, tmp_path) -> None:
    model = ["--model", str(checkpoints["gpt2"]), "--device", "cpu", "--cache-dir", str(tmp_path)]
    code, out, _ = run(capsys, "precompute", *model, "--json")
    assert code == 0 and "controls" not in json.loads(out)
    assert not list(tmp_path.rglob("controls.json"))
    code, out, _ = run(capsys, "precompute", *model, "--controls", "--json")
    info = json.loads(out)
    assert code == 0 and info["from_cache"] is True
    assert set(info["controls"]) == set(info["kinds"])
    assert info["controls"]["ov"][0] == 2  # one control per layer, not per head
    assert len(list(tmp_path.rglob("controls.json"))) == 1


def test_precompute_takes_the_gram_route(capsys, checkpoints, tmp_path, monkeypatch) -> None:
    import core.svd.gram as gram

    solved = []
    real = gram.host_gram_eigh
    monkeypatch.setattr(gram, "host_gram_eigh", lambda W, side: solved.append(1) or real(W, side))
    model = ["--model", str(checkpoints["gpt2"]), "--device", "cpu", "--json"]
    code, out, _ = run(capsys, "precompute", *model, "--cache-dir", str(tmp_path / "d"))
    assert code == 0 and not solved
    device = json.loads(out)["kinds"]
    code, out, _ = run(
        capsys, "precompute", *model, "--cache-dir", str(tmp_path / "h"), "--gram-eigh", "host"
    )
    assert code == 0 and json.loads(out)["kinds"] == device
    # Two layers of MLP in and MLP out, and the embedding.
    assert len(solved) == 5
    code, _, err = run(capsys, "precompute", *model, "--gram-eigh", "gpu")
    assert code != 0 and "invalid choice: 'gpu'" in err


def test_device_cuda_without_cuda_is_one_sentence(capsys, checkpoints, tmp_path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = [
        "directions",
        "--model",
        str(checkpoints["gpt2"]),
        "--device",
        "cuda",
        "--cache-dir",
        str(tmp_path),
        "--matrix",
        "ov",
        "--layer",
        "0",
        "--head",
        "0",
    ]
    code, out, err = run(capsys, *args)
    err = without_progress(err)
    assert code == 2 and out == ""
    assert err.startswith("error: --device cuda was asked for, but CUDA is not available")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
