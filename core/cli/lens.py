"""``python -m core lens``: the logit lens of a prompt and the directions it uses.

Example::

    python -m core lens --model default --prompt "The fire burned in the" --top 5 --json

For every position and every layer (the embedding, then the residual stream after each
block): the top tokens of the stream through the final norm and the unembedding, with
their probabilities, and the target's rank and probability (the target is the next
token of the prompt, or ``--target``'s first token at every position). For each block,
the ``--directions`` directions of its heads and MLP with the largest activation at
that position, on the reading side (``read``: OV, MLP in/gate) and the writing side
(``write``: OV, MLP out), each with the tokens of the end it pushes toward. The
activation is defined in :mod:`core.activations.readers` (and the README).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from core.cli.common import ArgError, open_from_args

#: Bounds checked before any work starts.
MAX_TOP, MAX_DIRECTIONS, MAX_K = 50, 50, 50


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``lens`` subcommand."""
    p = sub.add_parser(
        "lens",
        parents=[common],
        help="logit lens of a prompt and its most active directions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--prompt", required=True, help="the text to run through the model")
    p.add_argument("--top", type=int, default=5, help="top tokens per layer and position")
    p.add_argument(
        "--target", default=None, help="token to rank at every position (default: the next token)"
    )
    p.add_argument(
        "--directions", type=int, default=3, help="active directions per block, position and side"
    )
    p.add_argument("--k", type=int, default=8, help="tokens shown per active direction")
    p.add_argument(
        "--by",
        choices=("activation", "scaled"),
        default="activation",
        help="rank by |activation|, or on the reading side by |singular value x activation|",
    )
    p.set_defaults(func=_run)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)


def _run(args: argparse.Namespace) -> Any:
    from core.lens import (
        SIDES,
        active_directions,
        logit_lens,
        prompt_activations,
        row_names,
        run_prompt,
        target_token,
        with_tokens,
    )
    from core.lens.active import to_json

    if not 1 <= args.top <= MAX_TOP:
        raise ArgError(f"--top must be between 1 and {MAX_TOP}, not {args.top}.")
    if not 0 <= args.directions <= MAX_DIRECTIONS:
        raise ArgError(
            f"--directions must be between 0 and {MAX_DIRECTIONS}, not {args.directions}."
        )
    if not 1 <= args.k <= MAX_K:
        raise ArgError(f"--k must be between 1 and {MAX_K}, not {args.k}.")
    if not args.prompt.strip():
        raise ArgError("--prompt is empty; give some text to run through the model.")
    a = open_from_args(args, background=True)
    run = run_prompt(a, args.prompt)
    target = None
    if args.target is not None:
        assert a.model is not None
        target = target_token(a.model.tokenizer, args.target, args.prompt)
    lens = logit_lens(run.capture, k=args.top, target=target)
    raw = a.tokens.raw
    names = row_names(a.meta.n_layers)
    n_pos = len(run.ids)
    active: dict[tuple[int, int, str], list[Any]] = {}
    if args.directions:
        acts = prompt_activations(a, run.capture)
        for layer in range(a.meta.n_layers):
            for pos in range(n_pos):
                for side in SIDES:
                    active[(layer, pos, side)] = active_directions(
                        a, acts, layer, pos, side, args.directions, args.by
                    )
    flat = [x for items in active.values() for x in items]
    tokens = dict(zip(map(id, flat), (d for _, d in with_tokens(a, flat, k=args.k))))
    positions = []
    for pos in range(n_pos):
        tgt = int(lens.target[pos])
        rows = []
        for row, name in enumerate(names):
            entry: dict[str, Any] = {
                "layer": name,
                "top": [
                    [raw[i], round(float(p), 6)]
                    for i, p in zip(
                        lens.top_idx[row, pos].tolist(), lens.top_prob[row, pos].tolist()
                    )
                ],
                "target_rank": int(lens.target_rank[row, pos]) if tgt >= 0 else None,
                "target_prob": _num(float(lens.target_prob[row, pos])),
            }
            if row > 0 and args.directions:
                for side in SIDES:
                    entry[side] = [
                        to_json(x, tokens[id(x)], args.k) for x in active[(row - 1, pos, side)]
                    ]
            rows.append(entry)
        positions.append(
            {
                "position": pos,
                "token": raw[run.ids[pos]],
                "target": raw[tgt] if tgt >= 0 else None,
                "layers": rows,
            }
        )
    result = {
        "model": args.model,
        "processing": args.processing,
        "tokens": [raw[i] for i in run.ids],
        "layers": names,
        "positions": positions,
    }
    if args.json:
        return result
    return [
        {
            "pos": p["position"],
            "token": p["token"],
            "layer": r["layer"],
            "top": " ".join(f"{t}({v:.2f})" for t, v in r["top"]),
            "target": "" if p["target"] is None else f"{p['target']} #{r['target_rank']}",
            "read": " ".join(_short(x) for x in r.get("read", [])),
            "write": " ".join(_short(x) for x in r.get("write", [])),
        }
        for p in positions
        for r in p["layers"]
    ]


def _short(x: dict[str, Any]) -> str:
    head = "" if x["head"] is None else f"H{x['head']}"
    return f"L{x['layer']}{head}:{x['matrix']}#{x['index']}({x['activation']:+.2f})"
