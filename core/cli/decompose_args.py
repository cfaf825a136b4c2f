"""The options of the decompositions beyond the SVD, shared by ``directions`` and
``compare-methods``.
"""

from __future__ import annotations

import argparse

from core.cli.common import ArgError
from core.decompose import DecomposeOptions


def add_options(p: argparse.ArgumentParser) -> None:
    """Add ``--components``, ``--nnz``, ``--iters``, ``--max-rows``, ``--seed``, ``--uniform``."""
    g = p.add_argument_group("decomposition options (dictionary, nmf, ica)")
    g.add_argument(
        "--components",
        type=int,
        default=None,
        help="atoms (dictionary; default 4 x d_model) or components (nmf, ica; default 32)",
    )
    g.add_argument("--nnz", type=int, default=3, help="non-zeros per row of the dictionary codes")
    g.add_argument("--iters", type=int, default=None, help="iterations (default 8 / 100 / 200)")
    g.add_argument("--max-rows", type=int, default=4096, help="rows a fit sees at most")
    g.add_argument("--seed", type=int, default=0, help="seed of sampling, start and control")
    g.add_argument(
        "--uniform", action="store_true", help="weigh tokens uniformly, not by frequency"
    )


def options_from_args(args: argparse.Namespace, method: str) -> DecomposeOptions:
    """The :class:`DecomposeOptions` the flags describe (:class:`ArgError` when invalid)."""
    try:
        return DecomposeOptions(
            method=method,
            n_components=args.components,
            nnz=args.nnz,
            n_iter=args.iters,
            max_rows=args.max_rows,
            seed=args.seed,
            weighted=not args.uniform,
        )
    except ValueError as exc:
        raise ArgError(str(exc).replace("n_components", "--components")) from None
