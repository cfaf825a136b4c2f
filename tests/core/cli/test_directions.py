"""``directions --filter``: the new filters on the command line, refused ones, and
``--projection``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.analysis import open_analysis
from core.cli.main import main
from core.settings import Settings


def test_filters_and_projection_on_the_command_line(
    capsys, checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    ckpt = str(checkpoints["gpt2"])
    base = ["directions", "--model", ckpt, "--device", "cpu", "--cache-dir", str(tmp_path),
            "--matrix", "mlp_out", "--layer", "0", "--n", "3", "--k", "4"]  # fmt: skip
    assert main([*base, "--filter", "norm:10", "--projection", "raw", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    a = open_analysis(Settings(model=ckpt, device="cpu", cache_dir=tmp_path, projection="raw"))
    norms = a.weights.W_U.norm(dim=0).numpy()
    V = len(norms)
    high = {a.tokens.raw[i] for i in np.argsort(-norms, kind="stable")[: V // 10]}
    shown = {t for r in rows for t, _ in r["top"] + r["bottom"]}
    assert len(rows) == 3 and shown and not shown & high
    code = main([*base, "--filter", "norm:0"])
    assert code == 2
    assert "between 0 and 100" in capsys.readouterr().err
    assert main([*base, "--filter", "rare"]) == 2
    assert "unknown token filter" in capsys.readouterr().err


def test_a_command_on_an_empty_cache_leaves_the_entry_written(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    """``directions`` answers from the first directions and exits while its background
    fill projects the rest: the fill's entry is written as the interpreter shuts down
    (when an executor takes no more work), and the next call answers from it alone."""
    import subprocess
    import sys

    from core.cache import store

    root = Path(__file__).resolve().parents[3]
    cmd = [sys.executable, "-m", "core", "directions", "--model", str(checkpoints["gpt2"]),
           "--device", "cpu", "--cache-dir", str(tmp_path), "--matrix", "ov", "--layer", "1",
           "--head", "0", "--n", "3", "--json"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert first.returncode == 0, first.stderr
    assert "failed" not in first.stderr and "Traceback" not in first.stderr, first.stderr
    assert [e["processing"] for e in store.list_entries(tmp_path)] == ["post"]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=root)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert "loading model" not in again.stderr  # answered from the entry
