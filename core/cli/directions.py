"""``python -m core directions``: the top tokens of one component's directions.

Example::

    python -m core directions --model default --matrix ov --layer 3 --head 0 --n 10 --k 20 --json
    python -m core directions --model default --method dictionary --matrix embed --layer 0 --json

With ``--method`` other than ``svd`` the directions are that decomposition's components
(strongest first; ``singular_value`` is the share of squared norm each explains), built
on first use and cached beside the SVD; ``ov`` is then the layer's stacked heads.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import ArgError, open_from_args, tqdm_progress
from core.cli.decompose_args import add_options, options_from_args
from core.decompose import METHODS
from core.settings import MATRIX_KINDS
from core.svd.project import TOKEN_FILTERS
from core.svd.tokens import parse_filter


def _run(args: argparse.Namespace) -> Any:
    from core.query import directions, method_directions

    if args.k < 1:
        raise ArgError(f"--k must be at least 1, not {args.k}.")
    if args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    if args.method == "svd":
        a = open_from_args(args, background=True)
        rows = directions(a, args.matrix, args.layer, args.head, args.n, args.k, args.filter or ())
    else:
        opts = options_from_args(args, args.method)
        a = open_from_args(args)
        head = None if args.matrix == "ov" else args.head
        rows = method_directions(
            a, args.method, args.matrix, args.layer, head, args.n, args.k, args.filter or (),
            options=opts, progress=tqdm_progress(),
        )  # fmt: skip
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


def _token_filter(name: str) -> str:
    """``name`` if it is a token filter, else :class:`ArgError` saying which exist."""
    try:
        parse_filter(name)
    except ValueError as exc:
        raise ArgError(f"--filter: {exc}.") from exc
    return name


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``directions`` subcommand."""
    p = sub.add_parser("directions", parents=[common], help="top tokens of one matrix's directions")
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument(
        "--method",
        choices=METHODS,
        default="svd",
        help="decomposition: svd (default), dictionary (embed, mlp_out, ov), nmf (mlp_out, "
        "ov) or ica (embed, mlp_in)",
    )
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--n", type=int, default=10, help="directions")
    p.add_argument("--k", type=int, default=20, help="tokens per end")
    p.add_argument(
        "--filter",
        action="append",
        type=_token_filter,
        metavar="{" + ",".join(TOKEN_FILTERS) + "}",
        help="token filter, repeatable (trained: hide tokens detected as under-trained; "
        "frequent: English words of wordfreq Zipf >= 3; norm or norm:PERCENT: drop the "
        "2%% (PERCENT%%) of tokens with the largest unembedding norms)",
    )
    add_options(p)
    p.set_defaults(func=_run)
