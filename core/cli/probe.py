"""``python -m core probe``: what the residual stream still knows about its input.

    python -m core probe --model default --layers all --json
    python -m core probe --model default --previous

Per layer, a linear probe (scikit-learn) from the residual stream entering the block to
the token at that position (or the previous one, --previous): held-out top-1/top-10
accuracy, and how the probe relates to the embedding W_E.
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

#: Bounds checked before any work starts.
MAX_CLASSES, MAX_WINDOWS = 1000, 512


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``probe`` subcommand."""
    p = subparsers.add_parser(
        "probe",
        parents=[common],
        help="per-layer linear probe of the input token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--layers", default="all", help="'all', '3', '0,2,5' or '4-7'")
    p.add_argument("--previous", action="store_true", help="probe the previous token")
    p.add_argument("--classes", type=int, default=100, help="the most frequent tokens probed")
    p.add_argument("--windows", type=int, default=64, help="reference windows of 64 tokens")
    p.add_argument("--reference", type=Path, action="append", help="text file to probe on")
    p.set_defaults(func=_probe)


def _probe(args: argparse.Namespace) -> Any:
    from core.edit.hf import plain_model
    from core.experiments import probe_layers
    from core.label.sweep import parse_layers

    if not 2 <= args.classes <= MAX_CLASSES:
        raise ArgError(f"--classes must be between 2 and {MAX_CLASSES}, not {args.classes}.")
    if not 2 <= args.windows <= MAX_WINDOWS:
        raise ArgError(f"--windows must be between 2 and {MAX_WINDOWS}, not {args.windows}.")
    check_reference(args.reference)
    a = open_from_args(args)
    assert a.model is not None
    layers = parse_layers(args.layers, a.meta.n_layers)
    ids = reference_windows(a.model.tokenizer, args.reference, args.windows)
    res = probe_layers(
        plain_model(a),
        ids,
        a.raw.W_E,
        layers,
        previous=args.previous,
        max_classes=args.classes,
        progress=tqdm_progress(),
    )
    return [
        {
            "layer": int(layer),
            "target": res.target,
            "top1": round(float(res.top1[j]), 4),
            "top10": round(float(res.top10[j]), 4),
            "chance": round(res.chance, 4),
            "embed_cosine": round(float(res.embed_cosine[j]), 4),
            "embed_cosine_shuffled": round(float(res.embed_cosine_shuffled[j]), 4),
            "subspace_share": round(float(res.subspace_share[j]), 4),
            "subspace_chance": round(res.subspace_chance, 4),
            "n_classes": res.n_classes,
            "n_train": res.n_train,
            "n_test": res.n_test,
        }
        for j, layer in enumerate(res.layers.tolist())
    ]
