#!/usr/bin/env python
"""Markdown tables and a scaling chart from ``python -m core bench --json`` output.

BENCHMARKS.md's tables are pasted from this script's output, so every figure there is a
figure some run printed. Input files hold the JSON array the benchmark prints on stdout
or the one-object-per-line stream it prints on stderr (a killed run still has those);
a shape seen twice keeps its last object.

Examples::

    .venv/bin/python -m core bench --shapes demo,gpt2-small --json > /tmp/b1.json
    .venv/bin/python scripts/bench_report.py /tmp/b1.json /tmp/b2.json \\
        --chart docs/bench_scaling.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ORDER = ("tiny", "demo", "gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl")


def read_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Shape objects from each file (array or JSON lines), last one per shape, in size order."""
    by_shape: dict[str, dict[str, Any]] = {}
    for p in paths:
        text = p.read_text().strip()
        if not text:
            continue
        try:
            data = json.loads(text)
            objs = data if isinstance(data, list) else [data]
        except json.JSONDecodeError:
            objs = []
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("{"):
                    try:
                        objs.append(json.loads(line))
                    except json.JSONDecodeError:
                        continue
        for o in objs:
            if isinstance(o, dict) and "shape" in o:
                by_shape[o["shape"]] = o
    rank = {s: i for i, s in enumerate(ORDER)}
    return sorted(by_shape.values(), key=lambda r: rank.get(r["shape"], len(ORDER)))


def _s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}x"


def params_m(r: dict[str, Any]) -> float:
    """Millions of weights in the decomposed matrices plus the (tied) embedding."""
    L, d, V = r["n_layers"], r["d_model"], r["d_vocab"]
    return (L * 12 * d * d + V * d) / 1e6


def main_table(rows: list[dict[str, Any]]) -> str:
    """Precompute against the loop and the floor, with the reference scope."""
    head = (
        "| shape | layers x heads, d_model | weights | projected rows | precompute | "
        "controls (first use) | floor | precompute / floor | SVDInterpreter loop | "
        "speed-up vs loop | dense OV SVDs | factored OV | load avg (start, end) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    out = []
    for r in rows:
        ref = r.get("reference_layers_timed", r["n_layers"])
        scaled = "" if ref == r["n_layers"] else f" (x{r['n_layers'] / ref:g} of {ref} layer(s))"
        out.append(
            f"| {r['shape']} | {r['n_layers']} x {r['n_heads']}, {r['d_model']} | "
            f"{params_m(r):.0f}M | {r['projected_rows']} | **{_s(r['precompute_s'])}** | "
            f"{_s(r.get('controls_s'))} | {_s(r['floor_s'])} | "
            f"**{_x(r['precompute_vs_floor'])}** | {_s(r['svdinterpreter_loop_s'])}{scaled} | "
            f"**{_x(r['speedup_vs_svdinterpreter'])}** | {_s(r['dense_ov_s'])}{scaled} | "
            f"{_s(r['factored_ov_s'])} | {', '.join(str(v) for v in r.get('load_avg', []))} |"
        )
    return head + "\n".join(out) + "\n"


def interactive_table(rows: list[dict[str, Any]]) -> str:
    """What a dashboard user waits for, and what the cache costs."""
    head = (
        "| shape | one head's grid (ms) | search p50 / p95 (ms) | search again p50 / p95 (ms) "
        "| nulls computed | search rows | slowest page p50 (ms) | cache | cache load | peak RSS |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    out = []
    for r in rows:
        pages = r.get("page_ms") or {}
        slow = max(pages.items(), key=lambda kv: kv[1]) if pages else None
        page = f"{slow[1]:.0f} ({slow[0]})" if slow else "–"
        # Runs before the search was timed twice have no warm figures.
        warm = (
            f"{_ms(r['search_warm_p50_ms'])} / {_ms(r['search_warm_p95_ms'])}"
            if "search_warm_p50_ms" in r
            else "–"
        )
        nulls = (
            f"{r['search_nulls_computed']} of {r['search_queries']}"
            if "search_nulls_computed" in r
            else "–"
        )
        out.append(
            f"| {r['shape']} | {_ms(r['grid_head_ms'])} | {_ms(r['search_p50_ms'])} / "
            f"{_ms(r['search_p95_ms'])} | {warm} | {nulls} | {r.get('search_rows', '–')} | {page} | "
            f"{r['cache_mb']:.0f} MB | {_s(r['cache_load_s'])} | "
            f"{r['peak_rss_mb'] / 1024:.1f} GB |"
        )
    return head + "\n".join(out) + "\n"


def pages_table(rows: list[dict[str, Any]]) -> str:
    """Each page's median render time from a warm cache (AppTest), per shape: the same
    view rerun, and the page opened on a component it has not shown yet."""
    with_pages = [r for r in rows if r.get("page_ms")]
    if not with_pages:
        return ""
    names = list(with_pages[0]["page_ms"])
    head = "| shape | view | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
    body = []
    for r in with_pages:
        for label, key in (("same view", "page_ms"), ("new component", "page_new_ms")):
            if r.get(key):
                cells = " | ".join(_ms(r[key].get(n)) for n in names)
                body.append(f"| {r['shape']} | {label} | {cells} |")
    return head + "\n".join(body) + "\n"


def chart(rows: list[dict[str, Any]]) -> Any:
    """Log-log seconds against model size for precompute, floor, loop and dense OV."""
    import altair as alt
    import pandas as pd

    series = {
        "precompute (this tool)": "precompute_s",
        "floor (dirs @ W_U + top-k)": "floor_s",
        "SVDInterpreter loop": "svdinterpreter_loop_s",
        "dense OV SVDs": "dense_ov_s",
    }
    data = pd.DataFrame(
        [
            {"shape": r["shape"], "weights (M)": params_m(r), "what": name, "seconds": r[key]}
            for r in rows
            for name, key in series.items()
            if r.get(key)
        ]
    )
    base = alt.Chart(data).encode(
        x=alt.X("weights (M):Q", scale=alt.Scale(type="log", nice=False)),
        y=alt.Y("seconds:Q", scale=alt.Scale(type="log", nice=False)),
        color=alt.Color("what:N", sort=list(series)),
        tooltip=["shape", "what", alt.Tooltip("seconds:Q", format=".2f")],
    )
    labels = (
        alt.Chart(data[data["what"] == "precompute (this tool)"])
        .mark_text(dy=-10)
        .encode(x="weights (M):Q", y="seconds:Q", text="shape:N")
    )
    return (base.mark_line(point=True) + labels).properties(
        width=520, height=320, title="Cost against model size (wall seconds)"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the tables; with ``--chart PATH`` also save the chart (.png needs vl-convert)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--chart", type=Path, default=None, help="write the chart (.png, .json, .html)")
    args = p.parse_args(argv)
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(
            f"No such file: {', '.join(missing)}; pass the benchmark's JSON output.",
            file=sys.stderr,
        )
        return 2
    rows = read_rows(args.files)
    if not rows:
        print(
            "No benchmark objects in those files; run python -m core bench --json.", file=sys.stderr
        )
        return 2
    print(main_table(rows))
    print(interactive_table(rows))
    print(pages_table(rows))
    if args.chart is not None:
        chart(rows).save(str(args.chart))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
