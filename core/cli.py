"""Argument parsing and output for ``python -m core``.

Each subcommand module exposes ``register(subparsers, common)``; a handler returns a
JSON-serialisable value (printed as JSON with ``--json``) or a list of table rows.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.errors import CoreError
from core.settings import MATRIX_KINDS, Settings

#: Modules that add subcommands; each has ``register(subparsers, common)``.
EXTENSIONS = ("core.cli_search", "core.cli_edit", "core.cli_label", "core.cli_bench")


class ArgError(Exception):
    """Raised instead of argparse's own exit so every bad argument reads the same."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ArgError(message[0].upper() + message[1:] + ("" if message.endswith(".") else "."))


def common_parser() -> _Parser:
    """Options every model command takes: model, processing, device, cache, json."""
    p = _Parser(add_help=False)
    p.add_argument("--model", default="default", help="HF id, local checkpoint dir, or 'default'")
    p.add_argument("--processing", choices=("raw", "post"), default="post")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: ./cache)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    return p


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """The :class:`Settings` the common options describe."""
    fields: dict[str, Any] = dict(model=args.model, processing=args.processing, device=args.device)
    if args.cache_dir is not None:
        fields["cache_dir"] = args.cache_dir
    fields.update(extra)
    return Settings(**fields)


def tqdm_progress() -> Callable[[float, str], None]:
    """A progress callback drawing a tqdm bar on stderr."""
    from tqdm import tqdm

    bar = tqdm(
        total=100,
        file=sys.stderr,
        leave=False,
        bar_format="{bar:20}| {desc}",
        disable=not sys.stderr.isatty(),
    )

    def update(frac: float, msg: str) -> None:
        bar.set_description_str(msg)
        bar.n = int(frac * 100)
        bar.refresh()
        if frac >= 1.0:
            bar.close()

    return update


def open_from_args(args: argparse.Namespace, **extra: Any) -> Any:
    """Open the analysis the common options name, with a progress bar on stderr."""
    from core.analysis import open_analysis

    return open_analysis(settings_from_args(args, **extra), tqdm_progress())


def _precompute(args: argparse.Namespace) -> Any:
    a = open_from_args(args)
    s = a.svd
    out = {
        "model": a.meta.name,
        "processing": s.processing,
        "from_cache": a.from_cache,
        "kinds": {k: list(r.decomposition.S.shape) for k, r in s.kinds.items()},
    }
    if args.controls:
        from core.analysis import controls

        out["controls"] = {
            k: list(r.decomposition.S.shape) for k, r in controls(a, tqdm_progress()).items()
        }
    return out


def _directions(args: argparse.Namespace) -> Any:
    from core.analysis import directions

    if args.k < 1:
        raise ArgError(f"--k must be at least 1, not {args.k}.")
    if args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    a = open_from_args(args)
    rows = directions(a, args.matrix, args.layer, args.head, args.n, args.k, args.filter or ())
    if args.json:
        return [r.to_json() for r in rows]
    return [
        {
            "index": r.index,
            "sigma": f"{r.singular_value:.4g}" + (" ~" if r.degenerate else ""),
            "top": " ".join(t for _, t, _ in r.top[:8]),
            "bottom": " ".join(t for _, t, _ in r.bottom[:8]),
        }
        for r in rows
    ]


def build_parser() -> argparse.ArgumentParser:
    """The full parser, extensions included."""
    common = common_parser()
    parser = _Parser(prog="python -m core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("precompute", parents=[common], help="build the cache for a whole model")
    p.add_argument(
        "--controls",
        action="store_true",
        help="also build the random controls now (else they are built on first use)",
    )
    p.set_defaults(func=_precompute)
    p = sub.add_parser("directions", parents=[common], help="top tokens of one matrix's directions")
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--n", type=int, default=10, help="directions")
    p.add_argument("--k", type=int, default=20, help="tokens per end")
    p.add_argument("--filter", action="append", choices=("ascii", "alpha"), help="token filter")
    p.set_defaults(func=_directions)
    for name in EXTENSIONS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        mod.register(sub, common)
    return parser


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    """A plain aligned table on stdout."""
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    width = {c: min(w, 80) for c, w in width.items()}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, ""))[: width[c]].ljust(width[c]) for c in cols))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input or failure)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        result = args.func(args)
    except (ArgError, CoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    if getattr(args, "json", False) or not isinstance(result, list):
        print(json.dumps(result, indent=None if getattr(args, "json", False) else 1))
    else:
        print_table(result)
    return 0
