"""``python -m core directions``: the top tokens of one component's directions.

Example::

    python -m core directions --model default --matrix ov --layer 3 --head 0 --n 10 --k 20 --json
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import ArgError, open_from_args
from core.settings import MATRIX_KINDS
from core.svd.project import TOKEN_FILTERS


def _run(args: argparse.Namespace) -> Any:
    from core.query import directions

    if args.k < 1:
        raise ArgError(f"--k must be at least 1, not {args.k}.")
    if args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    a = open_from_args(args, background=True)
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``directions`` subcommand."""
    p = sub.add_parser("directions", parents=[common], help="top tokens of one matrix's directions")
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--n", type=int, default=10, help="directions")
    p.add_argument("--k", type=int, default=20, help="tokens per end")
    p.add_argument(
        "--filter",
        action="append",
        choices=TOKEN_FILTERS,
        help="token filter (trained: hide tokens detected as under-trained)",
    )
    p.set_defaults(func=_run)
