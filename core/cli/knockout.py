"""``python -m core knockout``: do the directions that read as concepts carry the model?

    python -m core knockout --model default --labeller offline --matrices mlp_in,mlp_out --json
    python -m core knockout --matrices mlp_out --layers 0-2 --draws 3

Every direction of the chosen matrices labelled interpretable (the label store's
verdicts; with --labeller offline, components without any are labelled first) is
deleted at once; so are as many uninterpretable ones matched in singular value, and
--draws random sets. Each reports the loss and KL on reference text and the change of
log p(next token) where the next token is among the deleted directions' top tokens.
Results are cached beside the model's entry; a rerun with the same options, text and
labels reads them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.cli.common import (
    ArgError,
    bounded,
    check_reference,
    open_from_args,
    reference_windows,
    tqdm_progress,
)

#: Bounds checked before any work starts.
MAX_DRAWS, MAX_WINDOWS, MAX_TOKENS, MAX_LABEL = 10, 256, 100, 4096


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``knockout`` subcommand."""
    p = subparsers.add_parser(
        "knockout",
        parents=[common],
        help="delete the interpretable directions against matched and random ones",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--matrices", default="mlp_in,mlp_out", help="e.g. mlp_in,mlp_out or ov")
    p.add_argument("--layers", default="all", help="'all', '3', '0,2,5' or '4-7'")
    p.add_argument("--labeller", choices=("offline", "llm", "manual"), default="offline")
    p.add_argument("--draws", type=int, default=3, help="random sets")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sets")
    p.add_argument("--tokens", type=int, default=15, help="top tokens per deleted direction")
    p.add_argument("--n-label", type=int, default=30, help="directions labelled per component")
    p.add_argument("--windows", type=int, default=8, help="reference windows of 64 tokens")
    p.add_argument("--reference", type=Path, action="append", help="text file to measure on")
    p.set_defaults(func=_knockout)


def _knockout(args: argparse.Namespace) -> Any:
    from core.experiments.knockout import KNOCKOUT_KINDS, KnockoutOptions
    from core.experiments.knockout_cache import cached_knockout
    from core.label.sweep import layer_spans, parse_layers

    kinds = tuple(dict.fromkeys(k.strip() for k in args.matrices.split(",") if k.strip()))
    for kind in kinds or ("",):
        if kind not in KNOCKOUT_KINDS:
            raise ArgError(
                f"Cannot knock out {kind!r}; give --matrices from {', '.join(KNOCKOUT_KINDS)}."
            )
    bounded("--draws", args.draws, 0, MAX_DRAWS)
    bounded("--windows", args.windows, 1, MAX_WINDOWS)
    bounded("--tokens", args.tokens, 1, MAX_TOKENS)
    bounded("--n-label", args.n_label, 1, MAX_LABEL)
    layer_spans(args.layers)
    check_reference(args.reference)
    a = open_from_args(args)
    assert a.model is not None
    layers = parse_layers(args.layers, a.meta.n_layers)
    ids = reference_windows(a.model.tokenizer, args.reference, args.windows)
    opts = KnockoutOptions(
        kinds=kinds,
        layers=tuple(layers),
        labeller=args.labeller,
        draws=args.draws,
        seed=args.seed,
        k_tokens=args.tokens,
        n_label=args.n_label,
    )
    res, cached = cached_knockout(a, ids, opts, tqdm_progress())
    if args.json:
        return {**res.to_json(), "cached": cached}
    return [
        {
            "set": r["set"] + (f" {r['draw']}" if r["set"] == "random" else ""),
            "deleted": r["n_deleted"],
            "sigma_sum": f"{r['sigma_sum']:.3f}",
            "loss_change": f"{r['loss_change']:+.4f}",
            "kl": f"{r['kl']:.4f}",
            "dlogprob_own": _f(r["dlogprob_own"]),
            "n_own": r["n_own"],
            "dlogprob_target": _f(r["dlogprob_target"]),
        }
        for r in res.rows()
    ]


def _f(x: float | None) -> str:
    return "" if x is None else f"{x:+.4f}"
