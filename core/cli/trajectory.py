"""``python -m core trajectory``: one component's directions through a series of
checkpoints (consecutive matched cosines, each final direction's partner at every
checkpoint, the spectra).

Example::

    python -m core trajectory --models ckpts/ --matrix ov --layer 1 --head 0 --json
    python -m core trajectory --models A,B,C --matrix mlp_out --layer 0 --json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.common import ArgError, open_from_args
from core.settings import MATRIX_KINDS


def model_list(text: str) -> list[str]:
    """The models ``--models`` names: a folder of checkpoints (in training order) or a
    comma-separated list.
    """
    from core.compare import list_checkpoints

    path = Path(text).expanduser()
    if "," not in text and path.is_dir() and not (path / "config.json").is_file():
        return [str(p) for p in list_checkpoints(path)]
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise ArgError("--models is empty; give a checkpoint folder or models separated by commas.")
    return names


def _run(args: argparse.Namespace) -> Any:
    from core.compare import series

    if args.nnz < 1:
        raise ArgError(f"--nnz must be at least 1, not {args.nnz}.")
    if args.n is not None and args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    names = model_list(args.models)
    if len(names) < 2:
        raise ArgError("--models names one model; a trajectory needs at least two checkpoints.")
    analyses = [open_from_args(args, model=m) for m in names]
    t = series(analyses, args.matrix, args.layer, args.head, args.n, args.tokens)
    out = t.to_json()
    if args.embed_dictionary:
        from core.cli.common import tqdm_progress
        from core.compare import dictionary_series
        from core.decompose import DecomposeOptions

        opts = DecomposeOptions(method="dictionary", nnz=args.nnz)
        points = dictionary_series(analyses, opts, tqdm_progress())
        out["embed_dictionary"] = [p.to_json() for p in points]
    if args.json:
        return out
    return [
        {
            "direction": d["index"],
            "appears_at": names[d["appears_at"]],
            "cos": " ".join(f"{c:.2f}" for c in d["cos"]),
            "final top": " ".join(d["top"][-1]),
        }
        for d in out["directions"]
    ]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``trajectory`` subcommand."""
    p = sub.add_parser(
        "trajectory", parents=[common], help="one component's directions through checkpoints"
    )
    p.add_argument(
        "--models", required=True, help="checkpoint folder, or models separated by commas"
    )
    p.add_argument("--matrix", required=True, choices=MATRIX_KINDS)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--n", type=int, default=None, help="directions to follow (default: all)")
    p.add_argument("--tokens", type=int, default=5, help="top tokens per checkpoint")
    p.add_argument(
        "--embed-dictionary",
        action="store_true",
        help="also the embedding's sparse dictionary error at every checkpoint, beside a "
        "random matrix's (one build per checkpoint, cached)",
    )
    p.add_argument("--nnz", type=int, default=3, help="non-zeros per token (--embed-dictionary)")
    p.set_defaults(func=_run)
