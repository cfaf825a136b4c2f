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
        "cached_first_prompt_s",
        "first_prompt_open_s",
        "first_prompt_answer_s",
        "search_p50_ms",
        "search_p95_ms",
        "null_warm_up_s",
        "search_after_warm_up_p50_ms",
    ):
        assert out[key] > 0, key
    # Every query has at most 3 concepts: the warm-up held each one's null.
    assert out["null_warm_up_shapes"] > 0
    assert out["search_after_warm_up_nulls_computed"] == 0
    assert out["open_s"] <= out["first_grid_s"] <= out["search_ready_s"] <= out["filled_s"]
    assert out["cached_cli_vs_import_torch"] == out["cached_cli_s"] / out["import_torch_s"]
    assert out["first_prompt_open_s"] + out["first_prompt_answer_s"] < out["cached_first_prompt_s"]
    assert out["first_prompt_lens_imported"] is False  # a plain Hugging Face load
    # The search was timed on an analysis opened from the cache alone.
    assert out["search_from_cache_without_model"] is True


def test_browser_waits_reads_each_session_count(monkeypatch) -> None:
    """The load test's report becomes one key per figure and session count; a run that
    printed no report is one error, not a crash."""
    import json
    import subprocess

    from core.bench import waits

    report = {
        "warmup_s": 12.5,
        "server_rss_after_warmup_mb": 900.0,
        "warmup_errors": [],
        "runs": [
            {
                "sessions": n,
                "wall_s": 10.0 * n,
                "page_p50_s": 0.1 * n,
                "slowest_page_p50_s": 0.2 * n,
                "server_peak_rss_mb": 1000.0 + n,
                "errors": ["session 3: Atlas: timeout"] if n == 20 else [],
            }
            for n in (1, 20)
        ],
    }
    calls: list[list[str]] = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, 1, json.dumps(report), "")

    monkeypatch.setattr(waits.subprocess, "run", fake_run)
    out = waits.browser_waits("models/x", "/tmp/c", (1, 20))
    assert calls[0][calls[0].index("--sessions") + 1] == "1,20"
    assert out["page_p50_s_1"] == 0.1 and out["page_p50_s_20"] == 2.0
    assert out["server_rss_mb_1"] == 1001.0 and out["server_rss_mb_20"] == 1020.0
    assert out["slowest_page_p50_s_20"] == 4.0 and out["page_warmup_s"] == 12.5
    assert out["page_errors"] == ["session 3: Atlas: timeout"]

    monkeypatch.setattr(
        waits.subprocess,
        "run",
        lambda args, **k: subprocess.CompletedProcess(args, 1, "", "no chromium\n"),
    )
    assert waits.browser_waits("models/x", "/tmp/c", (1,)) == {"page_errors": ["no chromium"]}
