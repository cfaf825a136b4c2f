"""What a user waits for, on a real checkpoint, in one run and as ratios.

* ``cached_cli_s`` against ``import_torch_s``: a ``python -m core directions ... --json``
  answered from a warm cache, and ``python -c "import torch"``, run alternately in the
  same minutes (the machine's load is shared, so the ratio is what to read);
  ``cached_search_cli_s`` the same for ``python -m core search``;
  ``cached_first_prompt_s`` the same for a process that opens the warm cache and answers
  the Prompt page's first prompt (:func:`core.lens.prompt.run_prompt`: the model loads
  for its forward pass), with ``first_prompt_open_s`` and ``first_prompt_answer_s`` (the
  open, then the answer, timed inside it) and ``first_prompt_lens_imported`` (whether
  TransformerLens was imported on the way);
* from an empty cache, in one fresh process doing what the dashboard does
  (:func:`core.analysis.open_analysis` with the background fill): ``open_s`` (model
  load, decompositions, the first directions of each component), ``first_grid_s`` (that
  plus one head's grid), ``search_ready_s`` (that plus the search index and one query),
  ``filled_s`` (every direction projected and the entry written);
* ``search_p50_ms`` / ``search_p95_ms`` over random queries on the cached analysis;
* with ``sessions`` (``--pages``, the default): the dashboard in a real Streamlit server
  on the same cache, driven by headless Chromium (``scripts/load_test.py``): one warm-up
  session (``page_warmup_s``: what the first visitor of each page waits for, the random
  controls included), then for each session count ``N`` in turn ``page_p50_s_N`` (the
  median click-to-rendered time over every page visit), ``slowest_page_p50_s_N`` and
  ``server_rss_mb_N`` (the server's peak RSS during that run).

Everything runs in subprocesses from the repository root, so the figures include the
interpreter's start and imports, as a user's call does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.bench.timing import median

#: The grid the waits open: the dashboard's default view of one OV head.
GRID = ("ov", 0, 0, 10, 15)

_EMPTY_CACHE = """
import json, random, sys, time
t0 = time.perf_counter()
from pathlib import Path
from core.analysis import open_analysis
from core.query import directions
from core.search.engine import build_index, search
from core.settings import Settings

model, cache, device, kind, layer, head, n, k = sys.argv[1:9]
a = open_analysis(Settings(model=model, cache_dir=Path(cache), device=device), background=True)
t_open = time.perf_counter() - t0
directions(a, kind, int(layer), int(head), int(n), int(k))
t_grid = time.perf_counter() - t0
idx = build_index(a)
words = [t.strip() for t, ok in zip(a.tokens.raw, a.tokens.alpha) if ok]
search(idx, ", ".join(random.Random(0).sample(words, 2)))
t_search = time.perf_counter() - t0
assert a.fill is None or (a.fill.wait() and a.fill.error is None)
t_filled = time.perf_counter() - t0
print(json.dumps({"open_s": t_open, "first_grid_s": t_grid, "search_ready_s": t_search,
                  "filled_s": t_filled}))
"""

#: The Prompt page's first answer on an analysis opened from a warm cache.
_FIRST_PROMPT = """
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from core.analysis import open_analysis
from core.lens.prompt import run_prompt
from core.settings import Settings

model, cache, device = sys.argv[1:4]
a = open_analysis(Settings(model=model, cache_dir=Path(cache), device=device))
t_open = time.perf_counter() - t0
run_prompt(a, "The capital of France is")
print(json.dumps({"open_s": t_open, "answer_s": time.perf_counter() - t0 - t_open,
                  "lens": "transformer_lens" in sys.modules}))
"""


def _env() -> dict[str, str]:
    from core.settings import REPO_ROOT

    path = os.environ.get("PYTHONPATH", "")
    root = str(REPO_ROOT)
    return {
        **os.environ,
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def _run(args: list[str]) -> tuple[float, str]:
    """Wall seconds of one subprocess and its stdout.

    Raises:
        CoreError: it failed; the sentence quotes its last line of stderr.
    """
    from core.errors import CoreError
    from core.settings import REPO_ROOT

    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT, env=_env())
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        raise CoreError(f"A timed command failed ({lines[-1]}); run it by hand: {' '.join(args)}")
    return wall, proc.stdout


def browser_waits(model: str, cache: str, sessions: tuple[int, ...]) -> dict[str, Any]:
    """Page render p50 and the server's RSS for each session count (the module
    docstring's keys), from one ``scripts/load_test.py`` run; ``page_errors`` lists what
    went wrong (a step past its timeout on a loaded machine), ``{}`` without Chromium.
    """
    from core.settings import REPO_ROOT

    script = REPO_ROOT / "scripts" / "load_test.py"
    args = [sys.executable, str(script), "--sessions", ",".join(str(n) for n in sessions)]
    args += ["--model", model, "--cache-dir", cache, "--timeout", "300", "--json"]
    proc = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT, env=_env())
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        return {"page_errors": [lines[-1]]}
    out: dict[str, Any] = {
        "page_warmup_s": report["warmup_s"],
        "server_rss_after_warmup_mb": report["server_rss_after_warmup_mb"],
        "page_errors": report["warmup_errors"] + [e for r in report["runs"] for e in r["errors"]],
    }
    for r in report["runs"]:
        n = r["sessions"]
        out[f"page_p50_s_{n}"] = r["page_p50_s"]
        out[f"slowest_page_p50_s_{n}"] = r["slowest_page_p50_s"]
        out[f"server_rss_mb_{n}"] = r["server_peak_rss_mb"]
        out[f"pages_wall_s_{n}"] = r["wall_s"]
    return out


def user_waits(
    model: str,
    repeat: int = 5,
    queries: int = 100,
    device: str = "cpu",
    sessions: tuple[int, ...] = (),
) -> dict[str, Any]:
    """The waits of the module docstring for checkpoint ``model`` (a spec as ``--model``
    takes), each subprocess timing the median of ``repeat`` runs after a warm-up; with
    ``sessions``, the dashboard's too (:func:`browser_waits`).
    """
    from core.analysis import open_analysis
    from core.bench.stages import search_latency
    from core.settings import Settings

    py = sys.executable
    out: dict[str, Any] = {"model": model, "device": device, "load_avg_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="svd-lens-waits-") as tmp:
        cache = str(Path(tmp) / "cache")
        kind, layer, head, n, k = GRID
        grid_args = [str(x) for x in (kind, layer, head, n, k)]
        wall, text = _run([py, "-c", _EMPTY_CACHE, model, cache, device, *grid_args])
        out.update(json.loads(text.strip().splitlines()[-1]))
        out["empty_cache_process_s"] = wall

        base = ["--model", model, "--cache-dir", cache, "--device", device, "--json"]
        cli = [py, "-m", "core", "directions", *base, "--matrix", kind, "--layer", str(layer)]
        cli += ["--head", str(head), "--n", str(n), "--k", str(k)]
        search_cli = [py, "-m", "core", "search", *base, "--query", "the, of"]
        prompt = [py, "-c", _FIRST_PROMPT, model, cache, device]
        runs: dict[str, list[float]] = {
            "import_torch": [],
            "cached_cli": [],
            "cached_search_cli": [],
            "cached_first_prompt": [],
            "first_prompt_open": [],
            "first_prompt_answer": [],
        }
        for i in range(repeat + 1):  # the first round warms the file cache
            for name, args in (
                ("import_torch", [py, "-c", "import torch"]),
                ("cached_cli", cli),
                ("cached_search_cli", search_cli),
                ("cached_first_prompt", prompt),
            ):
                try:
                    wall, text = _run(args)
                except Exception:
                    if name != "cached_search_cli":  # a vocabulary without "the"/"of"
                        raise
                    continue
                if not i:
                    continue
                runs[name].append(wall)
                if name == "cached_first_prompt":
                    inner = json.loads(text.strip().splitlines()[-1])
                    runs["first_prompt_open"].append(inner["open_s"])
                    runs["first_prompt_answer"].append(inner["answer_s"])
                    out["first_prompt_lens_imported"] = inner["lens"]
        for name, xs in runs.items():
            if xs:
                out[f"{name}_s"] = median(xs)
                out[f"{name}_runs_s"] = [round(x, 3) for x in xs]
        out["cached_cli_vs_import_torch"] = out["cached_cli_s"] / out["import_torch_s"]
        out["cached_first_prompt_vs_import_torch"] = (
            out["cached_first_prompt_s"] / out["import_torch_s"]
        )
        if "cached_search_cli_s" in out:
            out["cached_search_cli_vs_import_torch"] = (
                out["cached_search_cli_s"] / out["import_torch_s"]
            )

        s = Settings(model=model, cache_dir=Path(cache), device=device)  # type: ignore[arg-type]
        a = open_analysis(s)
        out["search_from_cache_without_model"] = not a.source.loaded
        out.update(search_latency(a, a.tokenizer, queries, seed=0))
        out["load_avg_before_pages"] = os.getloadavg()[0]
        if sessions:
            out.update(browser_waits(model, cache, sessions))
    out["load_avg_end"] = os.getloadavg()[0]
    return out
