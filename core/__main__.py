"""``python -m core``: the command-line interface."""

from core.cli.main import main

raise SystemExit(main())
