"""``python -m core match``: pair one component's directions in two models that share a
tokenizer (absolute cosine of token-space images, optimal assignment, principal angles).

Example::

    python -m core match --model A --other B --matrix ov --layer 3 --head 1 --json
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import ArgError, bounded, open_from_args
from core.settings import MATRIX_KINDS


def _run(args: argparse.Namespace) -> Any:
    from core.compare import match_component

    if args.n is not None and args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    if args.k < 1:
        raise ArgError(f"--k must be at least 1, not {args.k}.")
    bounded("--threshold", args.threshold, 0.0, 1.0)
    a = open_from_args(args)
    b = open_from_args(args, model=args.other)
    m = match_component(a, b, args.matrix, args.layer, args.head, args.n, args.k, args.threshold)
    out = m.to_json()
    if args.json:
        return out
    return [
        {
            "a": p["a"],
            "b": p["b"],
            "cos": f"{p['cos']:.3f}",
            "sign": p["sign"],
            "matched": "yes" if p["cos"] >= m.threshold else "NO",
        }
        for p in out["pairs"]
    ]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``match`` subcommand."""
    p = sub.add_parser(
        "match", parents=[common], help="match one component's directions across two models"
    )
    p.add_argument("--other", required=True, help="the second model (same tokenizer)")
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="directions to match (default: all)")
    p.add_argument("--k", type=int, default=8, help="top directions for the principal angles")
    p.add_argument(
        "--threshold", type=float, default=0.9, help="|cos| under which a pair is unmatched"
    )
    p.set_defaults(func=_run)
