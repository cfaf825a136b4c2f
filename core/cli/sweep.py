r"""``python -m core sweep``: build the cache entries of many models, serially or as Ray
tasks (on an existing cluster with ``--address``, else on a local one started here).

Example::

    python -m core sweep --models ckpts/ --engine ray --json
    python -m core sweep --models A,B,C --engine ray --address 10.0.0.1:6379 \\
        --gpus-per-task 1 --cache-dir /shared/svd-cache
    python -m core sweep --models big-model/ --engine ray --layers-per-task 4
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.cli.common import ArgError, settings_from_args
from core.cli.trajectory import model_list


def _progress(index: int, model: str, frac: float, msg: str) -> None:
    print(f"[task {index}] {model}: {frac:4.0%} {msg}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> Any:
    from core.sweep import SweepOptions, run_sweep

    what = tuple(w.strip() for w in args.what.split(",") if w.strip())
    if args.gpus_per_task < 0:
        raise ArgError(f"--gpus-per-task must not be negative, not {args.gpus_per_task}.")
    if args.engine == "local" and args.address:
        raise ArgError("--address is for --engine ray; add --engine ray or leave it out.")
    settings = settings_from_args(args)
    options = SweepOptions(
        models=tuple(model_list(args.models)),
        cache_dir=settings.cache_dir,
        processing=settings.processing,
        device=settings.device,
        what=what,
        engine=args.engine,
        address=args.address,
        num_cpus=args.num_cpus,
        gpus_per_task=args.gpus_per_task,
        max_retries=args.max_retries,
        layers_per_task=args.layers_per_task,
    )
    report = run_sweep(options, _progress)
    out = report.to_json()
    if args.json:
        return out
    return [
        {
            "model": t["model"],
            "state": t["state"],
            "attempts": t["attempts"],
            "seconds": t["seconds"],
            "error": t["error"],
        }
        for t in out["tasks"]
    ]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sweep`` subcommand."""
    p = sub.add_parser(
        "sweep", parents=[common], help="build many models' cache entries (serial or Ray)"
    )
    p.add_argument(
        "--models", required=True, help="checkpoint folder, or models separated by commas"
    )
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument(
        "--address", default=None, help="Ray cluster address (default: start a local one)"
    )
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray cluster")
    p.add_argument("--gpus-per-task", type=float, default=0.0)
    p.add_argument("--max-retries", type=int, default=3, help="retries of a task whose worker died")
    p.add_argument(
        "--what",
        default="decompose",
        help="decompose[,controls][,labels][,examples] (labels: the offline labeller on both ends, in "
        "labels.sqlite; examples: dataset examples over the reference corpus)",
    )
    p.add_argument(
        "--layers-per-task",
        type=int,
        default=0,
        help="split each model into tasks of N layers that read only their layers' tensors "
        "(for models too big for one worker); 0: one task per model",
    )
    p.set_defaults(func=_run)
