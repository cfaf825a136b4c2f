"""``python -m core precompute``: build the cache entry for a whole model.

Example::

    python -m core precompute --model default --controls
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import open_from_args, tqdm_progress
from core.settings import GRAM_ROUTES


def _run(args: argparse.Namespace) -> Any:
    a = open_from_args(args, gram_eigh=args.gram_eigh)
    s = a.svd
    out = {
        "model": a.meta.name,
        "processing": s.processing,
        "from_cache": a.from_cache,
        "kinds": {k: list(r.decomposition.S.shape) for k, r in s.kinds.items()},
    }
    if args.controls:
        from core.random_control import controls

        out["controls"] = {
            k: list(r.decomposition.S.shape) for k, r in controls(a, tqdm_progress()).items()
        }
    return out


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``precompute`` subcommand."""
    p = sub.add_parser("precompute", parents=[common], help="build the cache for a whole model")
    p.add_argument(
        "--controls",
        action="store_true",
        help="also build the random controls now (else they are built on first use)",
    )
    p.add_argument(
        "--gram-eigh",
        choices=GRAM_ROUTES,
        default="device",
        help="where the MLP matrices' float64 Gram eigendecompositions run: device (with "
        "the rest) or host (CPU threads, overlapping the OV heads on a GPU); same results",
    )
    p.set_defaults(func=_run)
