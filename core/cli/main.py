"""``python -m core``: one entry point, one module per subcommand.

Each subcommand module exposes ``register(subparsers, common)``; a handler returns a
JSON-serialisable value (printed as JSON with ``--json``) or a list of table rows.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from core.cli import (
    bench,
    compare_methods,
    directions,
    edit,
    examples,
    knockout,
    label,
    lens,
    match,
    precompute,
    probe,
    projection,
    search,
    sweep,
    trajectory,
    truncate,
)
from core.cli.common import (
    ArgError,
    _Parser,
    check_common,
    common_parser,
    print_table,
    report_error,
    start_command,
)
from core.errors import CoreError

#: The subcommands, in the order ``--help`` lists them.
COMMANDS = (
    precompute,
    directions,
    examples,
    search,
    edit,
    truncate,
    knockout,
    probe,
    label,
    projection,
    bench,
    match,
    trajectory,
    sweep,
    lens,
    compare_methods,
)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, every subcommand included."""
    common = common_parser()
    parser = _Parser(
        prog="python -m core",
        description="Read transformer weights through their singular value decompositions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input or failure)."""
    start_command()
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        check_common(args)
        result = args.func(args)
    except (ArgError, CoreError) as exc:
        report_error(str(exc))
        return 2
    except OSError as exc:
        # Past the checks: a disk filling up or a folder vanishing mid-run.
        where = f" {exc.filename}" if exc.filename else ""
        report_error(
            f"Cannot read or write{where} ({exc.strerror or exc}); "
            "check the path, its permissions and the free space."
        )
        return 2
    except KeyboardInterrupt:
        return 130
    if getattr(args, "json", False) or not isinstance(result, list):
        print(json.dumps(result, indent=None if getattr(args, "json", False) else 1))
    else:
        print_table(result)
    # The answer now: a background fill may keep the process busy writing the cache.
    sys.stdout.flush()
    return 0
