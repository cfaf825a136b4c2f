"""``python -m core examples``: one direction's dataset examples from the reference corpus.

Example::

    python -m core examples --model default --matrix mlp_in --layer 2 --index 0 --n 10 --json

The first call for a model (and corpus, split and token budget) reads the corpus with the
model once and caches every direction's examples; later calls answer from the cache.
"""

from __future__ import annotations

import argparse
from typing import Any

from core.cli.common import ArgError, open_from_args, tqdm_progress


def _run(args: argparse.Namespace) -> Any:
    from core.activations import (
        DEFAULT_TOKENS,
        ExampleOptions,
        direction_examples,
        get_examples,
        load_corpus,
        resolve_side,
    )
    from core.query import check_component, kind_result

    for flag in ("n", "tokens", "index"):
        low = 0 if flag == "index" else 1
        if getattr(args, flag) is not None and getattr(args, flag) < low:
            raise ArgError(f"--{flag} must be at least {low}, not {getattr(args, flag)}.")
    corpus = load_corpus(args.corpus)
    a = open_from_args(args)
    check_component(a.meta, args.matrix, args.layer, args.head, a.meta.gated)
    # Refused before the corpus is read, not after.
    try:
        resolve_side(args.matrix, args.side)
    except ValueError as exc:
        raise ArgError(str(exc)) from None
    rank = kind_result(a, args.matrix).decomposition.rank
    if args.index >= rank:
        raise ArgError(
            f"--index must be below {rank} (the rank of {args.matrix}), not {args.index}."
        )
    opts = ExampleOptions(tokens=args.tokens or DEFAULT_TOKENS, n=max(args.n, 10), split=args.split)
    built = get_examples(a, corpus, opts, tqdm_progress())
    assert built is not None
    view = direction_examples(
        built, corpus, a.tokenizer, a.tokens.raw, args.matrix, args.layer, args.head,
        args.index, args.side, args.n,
    )  # fmt: skip
    if args.json:
        return {**view.to_json(), "corpus": corpus.name, "split": args.split,
                "build_seconds": round(built.seconds, 2)}  # fmt: skip
    return [
        {
            "end": end,
            "value": f"{ex.value:.4g}",
            "doc": ex.doc,
            "pos": ex.pos,
            "context": ex.to_json()["context"].replace("\n", " "),
        }
        for end, rows in (("top", view.top), ("bottom", view.bottom))
        for ex in rows
    ]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``examples`` subcommand."""
    from core.settings import ACTIVATION_SIDES

    p = sub.add_parser(
        "examples", parents=[common], help="dataset examples of one direction (corpus contexts)"
    )
    p.add_argument("--matrix", required=True, choices=tuple(ACTIVATION_SIDES))
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--index", type=int, required=True, help="direction (0 = largest sigma)")
    p.add_argument("--n", type=int, default=10, help="examples per end")
    p.add_argument(
        "--side",
        choices=("read", "write", "query", "key"),
        default=None,
        help="which side's activation (default: the matrix's first; QK: read=query, write=key)",
    )
    p.add_argument(
        "--tokens", type=int, default=None, help="corpus tokens read when building (default 5000)"
    )
    p.add_argument("--split", choices=("train", "heldout"), default="train")
    p.add_argument("--corpus", default=None, help="a .jsonl(.xz) corpus (default: the shipped one)")
    p.set_defaults(func=_run)
