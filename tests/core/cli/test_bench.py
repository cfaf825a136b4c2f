"""``python -m core bench``'s dashboard page timings (``--pages``), without running a bench."""

from __future__ import annotations

import pytest

from core.cli.bench import _row, page_times, pages_fields
from core.cli.main import main
from core.errors import CoreError


def test_no_pages_is_accepted(capsys) -> None:
    # The shape check runs after parsing: its message proves --no-pages/--pages parsed.
    for flag in ("--no-pages", "--pages"):
        assert main(["bench", flag, "--shapes", "gpt5", "--json"]) == 2
        assert "Unknown shape" in capsys.readouterr().err


def test_failing_pages_subprocess_is_one_core_error_sentence() -> None:
    with pytest.raises(CoreError) as err:
        page_times("gpt5")  # the subprocess rejects the shape and exits 2
    msg = str(err.value)
    assert msg.startswith("Timing the dashboard pages of gpt5 failed: Unknown shape 'gpt5'")
    assert msg.endswith("rerun with --no-pages to skip them.") and "\n" not in msg


def test_pages_fields_merge_and_row() -> None:
    out = {
        "shape": "tiny",
        "page_ms": {"overview": 12.0, "grid": 40.5, "atlas": 20.0},
        "page_max_ms": {"overview": 15.0, "grid": 80.0, "atlas": 21.0},
        "page_new_ms": {"overview": 14.0, "grid": 90.0, "atlas": 25.0},
        "page_new_max_ms": {"overview": 16.0, "grid": 95.0, "atlas": 26.0},
        "warm_s": 3.5,
    }
    fields = pages_fields(out)
    assert fields == {
        "page_ms": out["page_ms"],
        "page_max_ms": out["page_max_ms"],
        "page_new_ms": out["page_new_ms"],
        "page_new_max_ms": out["page_new_max_ms"],
        "page_warm_s": 3.5,
        "pages_max_p50_ms": 40.5,
        "pages_new_max_p50_ms": 90.0,
    }
    res = dict.fromkeys(
        ["precompute_s", "floor_s", "svdinterpreter_loop_s", "speedup_vs_svdinterpreter"]
        + ["precompute_vs_floor", "dense_ov_s", "grid_head_ms", "search_p50_ms", "cache_mb"]
        + ["peak_rss_mb"],
        1.0,
    )
    res["shape"] = "tiny"
    assert _row(res)["pages_p50_ms"] == "-"  # --no-pages
    assert _row({**res, **fields})["pages_p50_ms"] == "40"
