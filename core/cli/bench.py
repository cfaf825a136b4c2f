"""``python -m core bench``: precompute, reference loop, floor, search and cache figures
for random models of GPT-2's shapes (see :mod:`core.bench.run`), and the dashboard pages'
render times (:mod:`dashboard.bench_pages`, run as a subprocess: core never imports
streamlit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Any

DEFAULT_SHAPES = "demo,gpt2-small"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``bench`` subcommand (it takes no model: it builds its own)."""
    from core.model.random import SHAPES
    from core.settings import GRAM_ROUTES

    public = [s for s in SHAPES if s != "tiny"]
    p = subparsers.add_parser(
        "bench",
        help="benchmark precompute, search and cache on random GPT-2-shaped models",
        description=f"Shapes: {', '.join(public)}. Prints one JSON object per shape "
        "(a JSON array with --json).",
    )
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--shapes", default=DEFAULT_SHAPES, help=f"comma-separated (default {DEFAULT_SHAPES})"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per timing; medians reported")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--reference-layers",
        type=int,
        default=None,
        help="time the SVDInterpreter loop and dense OV on this many layers and scale "
        "to the model (default: all layers)",
    )
    p.add_argument("--queries", type=int, default=100, help="search queries timed")
    p.add_argument(
        "--gram-eigh",
        choices=GRAM_ROUTES,
        default="device",
        help="where the precompute's MLP Gram eigendecompositions run (Settings.gram_eigh)",
    )
    p.add_argument(
        "--null-warm-up",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the queries again after the dashboard's warm-up of the search nulls "
        "(55 nulls per shape; default: on; --waits always does)",
    )
    p.add_argument(
        "--pages",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time every dashboard page from a warm cache (default: on)",
    )
    p.add_argument(
        "--waits",
        metavar="MODEL",
        default=None,
        help="instead of the shapes: what a user waits for on the checkpoint MODEL "
        "('default', a directory): cached CLI call against `import torch`, empty cache to "
        "first grid and to search, search p50/p95, and with --pages page render p50 and the "
        "server's RSS for --sessions (core.bench.waits)",
    )
    p.add_argument(
        "--sessions",
        default="1,20",
        help="with --waits and --pages: browser sessions of the dashboard's load test, run "
        "in turn on one server (default 1,20)",
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> Any:
    from core.bench import BenchOptions, run_isolated
    from core.cli.common import ArgError
    from core.model.random import SHAPES

    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            raise ArgError(f"Unknown shape {s!r}; use some of {', '.join(SHAPES)}.")
    if not shapes:
        raise ArgError("Name at least one shape, e.g. --shapes demo.")
    if args.repeat < 1:
        raise ArgError(f"--repeat must be at least 1, not {args.repeat}.")
    if args.threads is not None and args.threads < 1:
        raise ArgError(f"--threads must be at least 1, not {args.threads}.")
    if args.queries < 1:
        raise ArgError(f"--queries must be at least 1, not {args.queries}.")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ArgError("CUDA is not available here; run with --device cpu.")
    if args.waits is not None:
        from core.bench.waits import user_waits

        try:
            sessions = tuple(int(x) for x in args.sessions.split(",") if x.strip())
        except ValueError:
            raise ArgError(f"--sessions takes counts like 1,20, not {args.sessions!r}.") from None
        if any(n < 1 for n in sessions):
            raise ArgError(f"--sessions takes counts of at least 1, not {args.sessions!r}.")
        res = user_waits(
            args.waits,
            max(args.repeat, 5),
            args.queries,
            args.device,
            sessions if args.pages else (),
        )
        print(json.dumps(res), file=sys.stderr, flush=True)
        return res
    opts = BenchOptions(
        device=args.device,
        repeat=args.repeat,
        threads=args.threads,
        reference_layers=args.reference_layers,
        queries=args.queries,
        null_warm_up=args.null_warm_up,
        gram_eigh=args.gram_eigh,
    )
    results = []
    for s in shapes:
        res = run_isolated(s, opts)
        if args.pages:
            res.update(page_times(s, args.threads))
        # Each shape's object as soon as it is done: long runs show progress.
        print(json.dumps(res), file=sys.stderr, flush=True)
        results.append(res)
    if args.json:
        return results
    return [_row(r) for r in results]


def page_times(shape: str, threads: int | None = None) -> dict[str, Any]:
    """Render times of the dashboard's pages for ``shape``, as keys of its result.

    ``python -m dashboard.bench_pages`` in a subprocess (its own process for its own
    memory, and core must not import streamlit).

    Raises:
        CoreError: the subprocess failed; the sentence quotes its last line of stderr.
    """
    from core.errors import CoreError
    from core.settings import REPO_ROOT

    cmd = [sys.executable, "-m", "dashboard.bench_pages", "--shape", shape, "--json"]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    # From the repository root, where `-m dashboard...` resolves.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"]
        reason = lines[-1].removeprefix("error: ").rstrip(".")
    else:
        try:
            return pages_fields(json.loads(proc.stdout))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            reason = f"its output was not the expected JSON ({exc})"
    raise CoreError(
        f"Timing the dashboard pages of {shape} failed: {reason}; rerun with --no-pages "
        "to skip them."
    )


def pages_fields(out: dict[str, Any]) -> dict[str, Any]:
    """The keys merged into a shape's result from ``dashboard.bench_pages``'s JSON."""
    return {
        "page_ms": out["page_ms"],
        "page_max_ms": out["page_max_ms"],
        "page_new_ms": out["page_new_ms"],
        "page_new_max_ms": out["page_new_max_ms"],
        "page_warm_s": out["warm_s"],
        # The figures the target (300 ms per page) is read against: the same view
        # rerun, and a component the page has not shown yet.
        "pages_max_p50_ms": max(out["page_ms"].values()),
        "pages_new_max_p50_ms": max(out["page_new_ms"].values()),
    }


def _row(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "shape": r["shape"],
        "precompute_s": f"{r['precompute_s']:.2f}",
        "floor_s": f"{r['floor_s']:.2f}",
        "svdinterp_s": f"{r['svdinterpreter_loop_s']:.2f}",
        "speedup": f"{r['speedup_vs_svdinterpreter']:.2f}x",
        "vs_floor": f"{r['precompute_vs_floor']:.2f}x",
        "dense_ov_s": f"{r['dense_ov_s']:.2f}",
        "grid_ms": f"{r['grid_head_ms']:.1f}",
        "search_p50_ms": f"{r['search_p50_ms']:.1f}",
        "cache_mb": f"{r['cache_mb']:.1f}",
        "peak_rss_mb": f"{r['peak_rss_mb']:.0f}",
        "pages_p50_ms": f"{r['pages_max_p50_ms']:.0f}" if "pages_max_p50_ms" in r else "-",
    }
