"""``projection-gap``: the real-against-control interpretable gap of each projection, the
measurement behind the default projection (README, "Projection").
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from core.cli.common import ArgError, bounded, log_progress, settings_from_args
from core.settings import PROJECTIONS

#: Directions per component and tokens per direction the measurement may ask for.
MAX_N = 200
MAX_K = 50


def _run(args: argparse.Namespace) -> Any:
    from core.label.projection import best_projection, projection_gaps
    from core.label.sweep import SWEEP_KINDS, layer_spans, parse_layers
    from core.model.loading import load_model
    from core.model.source import raw_weights

    bounded("--n", args.n, 1, MAX_N)
    bounded("--k", args.k, 2, MAX_K)
    if not 0.0 < args.rate < 0.5:
        raise ArgError(f"--rate is a share between 0 and 0.5, such as 0.05, not {args.rate}.")
    layer_spans(args.layers)
    projections = args.projections or list(PROJECTIONS)
    settings = settings_from_args(args)
    progress = log_progress()
    progress(0.0, f"loading model {settings.model}")
    model = load_model(settings)
    raw = raw_weights(model)
    layers = parse_layers(args.layers, raw.meta.n_layers)
    kinds = args.kinds or list(SWEEP_KINDS)
    rows = projection_gaps(
        raw,
        model.tokenizer,
        settings,
        projections,
        kinds,
        layers,
        args.n,
        args.k,
        args.rate,
        progress=progress,
    )
    best = best_projection(rows)
    print(f"largest mean gap: {best}", file=sys.stderr)
    if args.json:
        return {
            "model": settings.model,
            "layers": layers,
            "n": args.n,
            "k": args.k,
            "rate": args.rate,
            "rule": "largest mean gap over the blocks",
            "best": best,
            "rows": [r.to_json() for r in rows],
        }

    def pct(x: float) -> str:
        return "" if math.isnan(x) else f"{100 * x:.1f}"

    return [
        {
            "projection": r.projection,
            "matrix": r.matrix,
            "n": r.n,
            "real %": pct(r.fraction),
            "control %": pct(r.control_heldout),
            "gap pts": pct(r.gap),
            "95% CI": "" if math.isnan(r.gap_low) else f"{pct(r.gap_low)} .. {pct(r.gap_high)}",
            "top-2% norm %": pct(r.high_norm_share),
        }
        for r in rows
    ]


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``projection-gap``."""
    p = subparsers.add_parser(
        "projection-gap",
        parents=[common],
        help="interpretable gap (real minus random control) of each projection",
    )
    p.add_argument("--layers", default="all", help="'all', '3', '0,2,5' or '4-7'")
    p.add_argument("--n", type=int, default=30, help="directions per component")
    p.add_argument("--k", type=int, default=15, help="top tokens shown to the labeller")
    p.add_argument("--rate", type=float, default=0.05, help="control called interpretable")
    p.add_argument(
        "--kinds",
        nargs="+",
        choices=("ov", "mlp_in", "mlp_out", "mlp_gate", "qk"),
        default=None,
        help="blocks (default ov mlp_in mlp_out)",
    )
    p.add_argument(
        "--projections", nargs="+", choices=PROJECTIONS, default=None, help="default: all"
    )
    p.set_defaults(func=_run)
