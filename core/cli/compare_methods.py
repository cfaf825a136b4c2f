"""``python -m core compare-methods``: SVD, sparse dictionary, NMF and ICA of one matrix
side by side, each with its random Gaussian control.

Example::

    python -m core compare-methods --model default --matrix embed --json
    python -m core compare-methods --model default --matrix mlp_out --layer 2 --json

Prints the error curves (FVU against rank, non-zeros per row, atoms or components), the
share of the first ``--label`` components the offline labeller calls interpretable per
method and control (``--label 0`` skips it), the dictionary atoms no top SVD direction
is close to, the rows' largest cosine to the top SVD directions against random vectors,
and each build's seconds.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import ArgError, bounded, open_from_args, tqdm_progress
from core.cli.decompose_args import add_options, options_from_args


def _run(args: argparse.Namespace) -> Any:
    from core.analysis import settings_key
    from core.decompose.report import compare_methods
    from core.label.sweep import offline_judge

    bounded("--threshold", args.threshold, 0.0, 1.0)
    if args.label < 0:
        raise ArgError(f"--label must be 0 or more, not {args.label}.")
    if args.top < 1:
        raise ArgError(f"--top must be at least 1, not {args.top}.")
    opts = options_from_args(args, "dictionary")
    a = open_from_args(args)
    judge = offline_judge(a) if args.label else None
    report = compare_methods(
        a, settings_key(a.settings), args.matrix, args.layer, opts, judge, args.label,
        args.threshold, args.top, not args.no_curves, tqdm_progress(),
    )  # fmt: skip
    out = report.to_json()
    if args.json:
        return out
    rows = [
        {
            "method": p["method"] + (" (control)" if p["control"] else ""),
            "axis": p["axis"],
            "x": p["x"],
            "fvu": f"{p['fvu']:.4f}",
            "params": p["params"],
        }
        for p in out["curves"]
    ]
    return rows


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``compare-methods`` subcommand."""
    p = sub.add_parser(
        "compare-methods",
        parents=[common],
        help="SVD, sparse dictionary, NMF and ICA of one matrix against their random controls",
    )
    p.add_argument("--matrix", required=True, choices=("embed", "mlp_out", "ov"))
    p.add_argument("--layer", type=int, default=0)
    p.add_argument(
        "--label", type=int, default=32, help="components per method the labeller judges (0: skip)"
    )
    p.add_argument(
        "--threshold", type=float, default=0.5, help="|cos| under which an atom is unseen by SVD"
    )
    p.add_argument("--top", type=int, default=32, help="top SVD directions compared")
    p.add_argument(
        "--no-curves", action="store_true", help="skip the dictionary's nnz and K curves"
    )
    add_options(p)
    p.set_defaults(func=_run)
