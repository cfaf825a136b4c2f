"""Page render timing (``dashboard.bench_pages``) on the hidden ``tiny`` shape.

No timing thresholds: only that every page is timed, with finite positive figures, and
that failures name the page.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from core.model.random import SHAPES, synthetic_vocab
from core.search.warm import NullWarmer
from dashboard import registry
from dashboard.bench_pages import main, measure, write_checkpoint
from tests.dashboard.conftest import REPO

#: Every page of the registry, by the name the benchmark reports it under.
ALL_PAGES = {p.key for p in registry.PAGES}
GRID = registry.page("grid").script


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint("tiny", tmp_path_factory.mktemp("bench") / "tiny")


def test_checkpoint_loads_through_core(tiny: Path) -> None:
    from core.model.loading import load_model
    from core.model.source import raw_weights
    from core.settings import Settings

    n_layer, d_model, n_head, vocab = SHAPES["tiny"]
    assert (tiny / "model.safetensors").is_file()
    loaded = load_model(Settings(model=str(tiny), device="cpu"))
    meta = raw_weights(loaded).meta
    shape = (meta.n_layers, meta.d_model, meta.n_heads, meta.d_vocab)
    assert shape == (n_layer, d_model, n_head, vocab)
    tok = loaded.tokenizer
    words = synthetic_vocab(vocab)
    assert len(tok) == vocab
    for i in (0, 1, 4, 9, 500, vocab - 2):  # with and without a leading space, punctuation
        assert tok.encode(words[i], add_special_tokens=False) == [i], words[i]
        assert tok.decode([i]) == words[i]
    text = words[6] + words[7] + words[8]
    assert tok.encode(text, add_special_tokens=False) == [6, 7, 8]
    assert tok.eos_token_id == vocab - 1  # as the config says (GPT-2's layout)


def test_measure_times_every_page(tiny: Path, tmp_path: Path) -> None:
    before = os.environ.get("SVDLENS_DEFAULT_MODEL")
    warm_s, times = measure(str(tiny), tmp_path / "cache", repeat=2)
    assert warm_s > 0 and set(times) == ALL_PAGES
    for page, t in times.items():
        assert set(t) == {"p50_ms", "max_ms", "new_p50_ms", "new_max_ms"}, page
        assert math.isfinite(t["p50_ms"]) and 0 < t["p50_ms"] <= t["max_ms"], (page, t)
        assert math.isfinite(t["max_ms"]), page
        assert math.isfinite(t["new_max_ms"]) and 0 < t["new_p50_ms"] <= t["new_max_ms"], page
    assert any((tmp_path / "cache").iterdir())  # the warm-up built the entry there
    assert os.environ.get("SVDLENS_DEFAULT_MODEL") == before  # environment restored
    # The null warm-up writes into the entry: it is over before measure returns, so
    # the caller's removal of the cache directory cannot race a write (CI once failed
    # with "Directory not empty").
    assert not [t for t in threading.enumerate() if t.name == NullWarmer.thread_name]
    nulls = list((tmp_path / "cache").rglob("*null*"))
    assert nulls, "the warm-up wrote no null into the entry"


def test_a_failing_page_is_named(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="The overview page failed: .*no-such-model"):
        measure(str(tmp_path / "no-such-model"), tmp_path / "cache", repeat=1)


def test_cli_prints_one_json_object() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "dashboard.bench_pages", "--shape", "tiny", "--repeat", "1"]
        + ["--threads", "1", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["shape"] == "tiny" and out["threads"] == 1
    assert set(out["page_ms"]) == set(out["page_max_ms"]) == ALL_PAGES
    assert set(out["page_new_ms"]) == set(out["page_new_max_ms"]) == ALL_PAGES
    for page, ms in out["page_ms"].items():
        assert math.isfinite(ms) and 0 < ms <= out["page_max_ms"][page], (page, ms)
    assert out["warm_s"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--shape", "gpt5"], "Unknown shape 'gpt5'"),
        (["--shape", "tiny", "--repeat", "0"], "--repeat must be at least 1"),
        (["--shape", "tiny", "--threads", "0"], "--threads must be at least 1"),
        (["--repeat", "2"], "The following arguments are required: --shape"),
        (["--shape", "tiny", "--bogus"], "Unrecognized arguments: --bogus"),
    ],
)
def test_cli_rejects_bad_arguments(capsys, argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_select_steps_to_the_nth_component(tiny: Path, tmp_path: Path, monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    from dashboard import bench_pages

    monkeypatch.setenv("SVDLENS_DEFAULT_MODEL", str(tiny))
    monkeypatch.setenv("SVDLENS_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(str(bench_pages.APP), default_timeout=120)
    at.switch_page(GRID).run()
    n_heads = len(at.selectbox(key="w.head").options)
    seen = set()
    for n in range(1, 4):
        bench_pages._select(at, n)
        at.run()
        assert not at.exception
        got = (int(at.selectbox(key="w.layer").value), int(at.selectbox(key="w.head").value))
        assert got == ((n // n_heads) % len(at.selectbox(key="w.layer").options), n % n_heads)
        seen.add(got)
    assert len(seen) == 3
