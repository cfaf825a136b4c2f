"""``python -m core bench`` end to end on the hidden ``tiny`` shape (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from core.cli.main import main
from core.model.random import SHAPES, synthetic_vocab

REQUIRED = (
    "shape",
    "device",
    "precompute_s",
    "floor_s",
    "svdinterpreter_loop_s",
    "dense_ov_s",
    "speedup_vs_svdinterpreter",
    "search_p50_ms",
    "search_p95_ms",
    "cache_mb",
    "peak_rss_mb",
    "grid_head_ms",
    "cache_load_s",
)


def test_bench_runs_end_to_end_on_tiny_shape() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "bench",
            "--shapes",
            "tiny",
            "--json",
            "--queries",
            "5",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    for key in REQUIRED:
        assert key in row, key
    assert row["shape"] == "tiny" and row["device"] == "cpu"
    for key in REQUIRED[2:]:
        assert isinstance(row[key], (int, float)) and row[key] > 0, (key, row[key])
    assert row["projected_rows"] == 2 * 4 * 16 + 2 * 2 * 64  # heads x d_head + MLP x 64
    # Each kind's stage is split into its decomposition, projection and copy to the CPU,
    # which add up to it (each key rounded to 4 decimals).
    st = row["stages_s"]
    for kind in ("ov", "mlp_in", "mlp_out"):
        parts = [st[f"{kind}_{p}_s"] for p in ("svd", "projection", "copy")]
        assert all(p >= 0 for p in parts) and parts[0] > 0 and parts[1] > 0, (kind, parts)
        assert st[f"{kind}_s"] == pytest.approx(sum(parts), abs=2e-4)
    assert "control_ov_s" in st and "control_ov_svd_s" not in st
    # The queries timed again after the nulls' warm-up (queries of 1-3 words) needed none.
    assert row["null_warm_up_shapes"] > 0 and row["search_after_warm_up_nulls_computed"] == 0
    # Each shape's object also streams to stderr as it finishes.
    assert json.loads(proc.stderr.strip().splitlines()[-1])["shape"] == "tiny"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shapes", "gpt5"], "Unknown shape"),
        (["--repeat", "0"], "--repeat"),
        (["--shapes", ","], "at least one shape"),
    ],
)
def test_bench_rejects_bad_arguments(capsys, argv: list[str], message: str) -> None:
    assert main(["bench", *argv, "--json"]) == 2
    assert message in capsys.readouterr().err


def test_tiny_is_hidden_and_vocab_is_distinct() -> None:
    assert "tiny" in SHAPES
    vocab = synthetic_vocab(SHAPES["gpt2-small"][3])
    assert len(set(vocab)) == len(vocab)
    assert sum(t.strip().isalpha() for t in vocab) > len(vocab) // 2
