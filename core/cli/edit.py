"""``python -m core edit``: remove or scale singular directions and measure the effect.

    python -m core edit --remove ov:3:1:0,mlp_in:2:5 --prompt "The house was on" --target " fire"
    python -m core edit --sweep ov:3:1 --prompt "The house was on" --target " fire" --json
    python -m core edit --remove-search "fire, flames" --prompt ... --target ...

Indices are the ones ``python -m core directions`` lists under the same --processing.
Every report carries baselines: the same measurement for --random-draws random edits
matched in kind, direction index and singular value; the target's rank among all tokens
by decrease; the median change of the other tokens. --remove-search removes only hits
that are significant against random queries of the same shape.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from core.cli.common import ArgError, bounded, open_from_args, writable_dir
from core.search.engine import DEFAULT_THRESHOLD

#: Longest continuation: each token is a forward pass of the model, twice (before/after).
MAX_NEW_TOKENS = 256
_SWEEP = re.compile(r"^(ov|mlp_in|mlp_gate|mlp_out):(\d+)(?::(\d+))?$")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``edit`` subcommand."""
    p = subparsers.add_parser(
        "edit",
        parents=[common],
        help="remove singular directions and measure the effect",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--remove",
        metavar="SPEC",
        help="directions: ov:L:H:i,mlp_in:L:i,mlp_gate:L:i,mlp_out:L:i (an item may end in *SCALE)",
    )
    what.add_argument(
        "--sweep",
        metavar="MATRIX",
        help="remove each of the first --n directions of ov:L:H or mlp_*:L alone",
    )
    what.add_argument(
        "--remove-search",
        metavar="QUERY",
        help="remove every OV/MLP direction a semantic search for QUERY matches significantly",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="search: minimum |cosine| (default 0: none; significance decides)",
    )
    p.add_argument("--top", type=int, default=None, help="search: at most this many directions")
    p.add_argument("--prompt", required=True, help="text the target follows")
    p.add_argument(
        "--target",
        required=True,
        help="the next token, e.g. ' fire'; several tokens are scored as one sequence",
    )
    p.add_argument("--scale", type=float, default=0.0, help="0 removes, 1 keeps, 2 doubles")
    p.add_argument("--n", type=int, default=20, help="directions in a sweep")
    p.add_argument(
        "--random-draws",
        type=int,
        default=3,
        help="matched random edits measured as a baseline (default 3; 0: none)",
    )
    p.add_argument("--max-new-tokens", type=int, default=20, help="continuation length")
    p.add_argument(
        "--reference",
        type=Path,
        action="append",
        help="text file for the KL/loss check (default: the demo model's held-out text)",
    )
    p.add_argument("--export", type=Path, metavar="DIR", help="save the edited model here")
    p.set_defaults(func=_edit)


def parse_sweep(text: str) -> tuple[str, int, int | None]:
    """``ov:L:H`` or ``mlp_in:L`` -> ``(kind, layer, head)``; :class:`ArgError` if malformed."""
    m = _SWEEP.match(text.strip())
    if not m or (m.group(1) == "ov") != (m.group(3) is not None):
        raise ArgError(f"Cannot read --sweep {text!r}; write ov:LAYER:HEAD or mlp_in:LAYER.")
    return m.group(1), int(m.group(2)), None if m.group(3) is None else int(m.group(3))


def _edit(args: argparse.Namespace) -> Any:
    from core.edit import EditSet, measure, plan_sweep, run_sweep
    from core.edit.prompts import reference_ids, target_ids
    from core.edit.rank_one import validate

    if not 0.0 <= args.scale <= 2.0:
        raise ArgError(f"--scale must be between 0 and 2, not {args.scale:g}.")
    if args.n < 1:
        raise ArgError(f"--n must be at least 1, not {args.n}.")
    bounded("--max-new-tokens", args.max_new_tokens, 0, MAX_NEW_TOKENS)
    bounded("--random-draws", args.random_draws, 0, 20)
    for f in args.reference or ():
        if not f.is_file():
            raise ArgError(f"No reference file {f}; give a text file to --reference.")
    if not 0.0 <= args.threshold <= 1.0:
        raise ArgError(f"--threshold must be between 0 and 1, not {args.threshold}.")
    if args.top is not None and args.top < 1:
        raise ArgError(f"--top must be at least 1, not {args.top}.")
    if args.sweep is not None and args.export is not None:
        raise ArgError("--export needs --remove (a sweep makes no single edited model).")
    if args.export is not None:
        if args.export.is_dir() and any(args.export.iterdir()):
            raise ArgError(f"{args.export} is not empty; export into a new or empty directory.")
        writable_dir(args.export, "--export")
    # Parse before loading, so a typo fails at once.
    edits = EditSet.parse(args.remove, args.scale) if args.remove is not None else None
    comp = parse_sweep(args.sweep) if args.sweep is not None else None
    a = open_from_args(args)
    assert a.model is not None
    target_ids(a.model.tokenizer, args.target, args.prompt)
    if comp is not None:
        kind, layer, head = comp
        plan = plan_sweep(a, kind, layer, head, args.n, args.scale, args.random_draws)
        rows, base = run_sweep(a, plan, args.prompt, args.target)
        return [
            {
                "index": r.index,
                "delta_logprob": r.delta_logprob,
                "random_mean": None if b.mean != b.mean else b.mean,
                "random_std": None if b.std != b.std else b.std,
                "random_deltas": list(b.deltas),
                "exceeds_random": b.exceeded_by(r.delta_logprob),
            }
            for r, b in zip(rows, base)
        ]
    if args.remove_search is not None:
        from core.edit import EDIT_KINDS, search_edits
        from core.search import build_index

        index = build_index(a, EDIT_KINDS)
        edits = search_edits(index, args.remove_search, args.threshold, args.top, args.scale)
        if not len(edits):
            raise ArgError(
                f"No OV or MLP direction matches {args.remove_search!r} better than random "
                "queries of the same shape; try other words (python -m core search --all "
                "lists the hits with their p-values)."
            )
    assert edits is not None
    validate(a, edits)
    ref = None
    if args.reference:
        texts = [f.read_text(encoding="utf-8", errors="replace") for f in args.reference]
        ref = reference_ids(a.model.tokenizer, texts)
    report = measure(
        a, edits, args.prompt, args.target, ref, args.max_new_tokens, args.random_draws
    )
    out = report.to_json()
    if args.export is not None:
        from core.edit import export

        out["exported_to"] = str(export(a, edits, args.export))
    return out
