"""The user-wait benchmark end to end on a tiny checkpoint (no timing assertions)."""

from __future__ import annotations

from pathlib import Path

from core.bench.waits import user_waits


def test_waits_report_every_figure(checkpoints: dict[str, Path]) -> None:
    out = user_waits(str(checkpoints["gpt2"]), repeat=1, queries=3)
    for key in (
        "open_s",
        "first_grid_s",
        "search_ready_s",
        "filled_s",
        "import_torch_s",
        "cached_cli_s",
        "search_p50_ms",
        "search_p95_ms",
    ):
        assert out[key] > 0, key
    assert out["open_s"] <= out["first_grid_s"] <= out["search_ready_s"] <= out["filled_s"]
    assert out["cached_cli_vs_import_torch"] == out["cached_cli_s"] / out["import_torch_s"]
    # The search was timed on an analysis opened from the cache alone.
    assert out["search_from_cache_without_model"] is True
