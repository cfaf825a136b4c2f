"""``python -m core truncate``: how much of each matrix the model needs.

    python -m core truncate --model default --matrix mlp_out --layers all --json
    python -m core truncate --matrix ov --layers 3 --head 1 --ranks 0,1,2,4,8,16,32,64

Each layer's matrix (OV: every head of the layer, or --head alone) is replaced by its
top-k singular truncation, by k random singular directions (--draws), and by zero; the
result is the loss on reference text and loss recovered, 1 - (L_k - L) / (L_0 - L).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.common import (
    ArgError,
    check_reference,
    open_from_args,
    reference_windows,
    tqdm_progress,
)

#: Bounds checked before any work starts: each grid point is a forward pass per draw.
MAX_RANKS, MAX_DRAWS, MAX_WINDOWS = 32, 10, 256


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``truncate`` subcommand."""
    p = subparsers.add_parser(
        "truncate",
        parents=[common],
        help="rank-k truncation of each matrix and the loss recovered",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--matrix", choices=("ov", "mlp_in", "mlp_gate", "mlp_out"), default="mlp_out")
    p.add_argument("--layers", default="all", help="'all', '3', '0,2,5' or '4-7'")
    p.add_argument("--head", type=int, default=None, help="OV only: one head (default: all)")
    p.add_argument("--ranks", default="0,1,2,4,8,16,32,64,128,256", help="kept ranks, e.g. 0,4,16")
    p.add_argument("--draws", type=int, default=2, help="random draws per k")
    p.add_argument("--windows", type=int, default=8, help="reference windows of 64 tokens")
    p.add_argument("--reference", type=Path, action="append", help="text file for the loss")
    p.set_defaults(func=_truncate)


def parse_ranks(text: str) -> list[int]:
    """``"0,4,16"`` -> ``[0, 4, 16]``; :class:`ArgError` if malformed or too many."""
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as exc:
        raise ArgError(f"Cannot read --ranks {text!r}; give ranks like 0,4,16.") from exc
    if not ks or ks[0] < 0:
        raise ArgError(f"--ranks needs ranks of 0 or more, not {text!r}.")
    if len(ks) > MAX_RANKS:
        raise ArgError(f"--ranks has {len(ks)} ranks; give at most {MAX_RANKS}.")
    return ks


def _truncate(args: argparse.Namespace) -> Any:
    from core.experiments import truncation_sweep
    from core.label.sweep import parse_layers

    ks = parse_ranks(args.ranks)
    if not 0 <= args.draws <= MAX_DRAWS:
        raise ArgError(f"--draws must be between 0 and {MAX_DRAWS}, not {args.draws}.")
    if not 1 <= args.windows <= MAX_WINDOWS:
        raise ArgError(f"--windows must be between 1 and {MAX_WINDOWS}, not {args.windows}.")
    if args.head is not None and args.matrix != "ov":
        raise ArgError(f"{args.matrix} has no heads; leave --head out.")
    check_reference(args.reference)
    a = open_from_args(args)
    assert a.model is not None
    layers = parse_layers(args.layers, a.meta.n_layers)
    ids = reference_windows(a.model.tokenizer, args.reference, args.windows)
    if args.head is not None:
        from core.experiments import truncation_curve

        curves = [truncation_curve(a, "ov", la, args.head, ids, ks, args.draws) for la in layers]
    else:
        progress = tqdm_progress()
        curves = truncation_sweep(a, args.matrix, layers, ids, ks, args.draws, progress=progress)
    return [_row(c) for c in curves]


def _row(c: Any) -> dict[str, Any]:
    return {
        "matrix": c.kind,
        "layer": c.layer,
        "head": c.head,
        "rank": c.rank,
        "loss_orig": c.loss_orig,
        "loss_zero": c.loss_zero,
        "k": c.ks.tolist(),
        "loss_recovered": [round(x, 4) for x in c.recovered_svd.tolist()],
        "loss_recovered_random": [round(x, 4) for x in c.recovered_random.mean(0).tolist()]
        if c.recovered_random.shape[0]
        else None,
        "meaningful": c.meaningful,
        "k90": c.k_at(0.9),
        "k99": c.k_at(0.99),
    }
