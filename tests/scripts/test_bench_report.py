"""``scripts/bench_report.py``: tables and chart from benchmark JSON (array or JSON lines)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "bench_report.py"


def _row(shape: str, layers: int, scale: float) -> dict:
    return {
        "shape": shape,
        "n_layers": layers,
        "n_heads": 4,
        "d_model": 64 * layers,
        "d_vocab": 1000,
        "projected_rows": 100 * layers,
        "precompute_s": 1.5 * scale,
        "controls_s": 0.5 * scale,
        "floor_s": 1.0 * scale,
        "precompute_vs_floor": 1.5,
        "svdinterpreter_loop_s": 4.0 * scale,
        "speedup_vs_svdinterpreter": 4.0 / 1.5,
        "dense_ov_s": 3.0 * scale,
        "factored_ov_s": 0.1 * scale,
        "reference_layers_timed": 1,
        "grid_head_ms": 12.0,
        "search_p50_ms": 3.0,
        "search_p95_ms": 9.0,
        "search_rows": 300,
        "cache_mb": 7.0,
        "cache_load_s": 0.01,
        "peak_rss_mb": 900.0,
        "load_avg": [0.5, 1.0],
        "page_ms": {"overview": 20.0 * scale, "grid": 80.0},
    }


def test_report_reads_arrays_and_streams_keeps_last_and_orders_by_size(tmp_path: Path) -> None:
    big, small = _row("gpt2-medium", 4, 2.0), _row("demo", 2, 1.0)
    # Timed twice (since the nulls were told apart); ``small`` is an older run's row.
    big |= {"search_warm_p50_ms": 1.0, "search_warm_p95_ms": 2.0}
    big |= {"search_nulls_computed": 3, "search_queries": 30}
    old = {**_row("demo", 2, 1.0), "precompute_s": 99.0}
    (tmp_path / "a.json").write_text(json.dumps([big]))
    # A killed run's stderr: one object per line among other output.
    (tmp_path / "b.err").write_text("warming up\n" + json.dumps(old) + "\n" + json.dumps(small))
    chart = tmp_path / "chart.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tmp_path / "a.json"),
            str(tmp_path / "b.err"),
            "--chart",
            str(chart),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.index("| demo |") < out.index("| gpt2-medium |")
    assert "99.0" not in out and "1.50 s" in out  # the later demo object wins
    assert "(x4 of 1 layer(s))" in out  # scaled references are marked
    assert "| 3.0 / 9.0 | 1.0 / 2.0 | 3 of 30 | 300 |" in out
    assert "| 3.0 / 9.0 | – | – | 300 |" in out
    assert "| shape | view | overview | grid |" in out
    assert "| demo | same view | 20.0 | 80.0 |" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_rejects_missing_or_empty_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    for args in ([str(tmp_path / "nope.json")], [str(empty)]):
        proc = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
