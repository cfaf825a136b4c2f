"""``python -m core search``: find the singular directions closest to a query.

Example::

    python -m core search --model default --query "fire, flames" --top 20 --json

Only hits significant against random queries of the same shape are listed (``--all``:
every hit, each with ``p``, ``z`` and ``significant``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.common import ArgError, open_from_args
from core.search.embed import DEFAULT_METHOD, METHODS, split_concepts
from core.search.engine import DEFAULT_THRESHOLD
from core.settings import MATRIX_KINDS


def _kinds(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds:
        raise ArgError(f"--matrices needs at least one of {', '.join(MATRIX_KINDS)}.")
    for k in kinds:
        if k not in MATRIX_KINDS:
            raise ArgError(
                f"Unknown matrix {k!r} in --matrices; use some of {', '.join(MATRIX_KINDS)}."
            )
    return kinds


def _search(args: argparse.Namespace) -> Any:
    import torch

    from core.search.engine import DEFAULT_KINDS, build_index, not_significant, search

    if not split_concepts(args.query):
        raise ArgError(
            '--query is empty; give one or more comma-separated words, e.g. "fire, flames".'
        )
    if not 0.0 <= args.threshold <= 1.0:
        raise ArgError(f"--threshold must be between 0 and 1, not {args.threshold}.")
    if args.top < 1:
        raise ArgError(f"--top must be at least 1, not {args.top}.")
    if args.k < 1:
        raise ArgError(f"--k must be at least 1, not {args.k}.")
    kinds = _kinds(args.matrices)
    # Not in the background: the index's thresholds read the filled ends (see
    # core.cache.fill), so the command's answer is the one a filled cache gives.
    a = open_from_args(args)
    # Only the kinds searched: the index costs time per direction it stacks.
    index = build_index(a, kinds if kinds is not None else DEFAULT_KINDS)
    # One query is tens of milliseconds of small products, gathers and reductions: on a
    # shared 2-core machine torch's second thread spins against other processes and
    # made them 10-100x slower (a 104-row gather: 1 ms on one thread, 100-150 ms on two
    # at load 10). One question per process, so the setting ends with it.
    torch.set_num_threads(1)
    res = search(
        index,
        args.query,
        args.embed,
        args.threshold,
        args.top,
        kinds,
        args.k,
    )
    sentence = not_significant(res)
    if sentence is not None and not args.all:
        print(f"{sentence} Add --all to list them.", file=sys.stderr)
    hits = res.hits if args.all else res.significant
    if args.json:
        return [h.to_json() for h in hits]
    return [
        {
            "matrix": h.matrix,
            "layer": h.layer,
            "head": "" if h.head is None else h.head,
            "index": h.index,
            "sigma": f"{h.singular_value:.4g}",
            "cosine": f"{h.cosine:+.3f}",
            "score": f"{h.score:.3f}",
            "p": f"{h.p:.3f}" if h.p is not None else "",
            "significant": h.significant,
            "sign": h.sign,
            "tokens": ("(bottom) " if h.end == "bottom" else "")
            + " ".join(t for _, t, _ in h.tokens[:8]),
        }
        for h in hits
    ]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``search`` subcommand."""
    p = subparsers.add_parser(
        "search",
        parents=[common],
        help="singular directions closest to a query (comma-separated words)",
    )
    p.add_argument("--query", required=True, help='comma-separated concepts, e.g. "fire, flames"')
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="minimum |cosine| of the method's query vector (default 0: none; significance "
        "decides what matches)",
    )
    p.add_argument("--top", type=int, default=20, help="at most this many matches (default 20)")
    p.add_argument(
        "--all",
        action="store_true",
        help="also list hits that are not significant against random queries of the same "
        "shape (p > 0.05; they are marked significant: false)",
    )
    p.add_argument(
        "--matrices",
        default=None,
        help="comma-separated kinds to search (default: ov,mlp_in,mlp_gate,mlp_out that exist)",
    )
    p.add_argument(
        "--embed",
        choices=METHODS,
        default=DEFAULT_METHOD,
        help=f"query method (default {DEFAULT_METHOD}: token-space match; ridge: centred "
        "ridge vector; pinv: the post's pinv(W_U); embed: W_E rows)",
    )
    p.add_argument("--k", type=int, default=10, help="tokens shown per match (default 10)")
    p.set_defaults(func=_search)
