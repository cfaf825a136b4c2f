"""``python -m core``: one module per subcommand (see :mod:`core.cli.main`).

The command line is the only place in ``core`` that reads ``sys.argv`` or environment
variables; everything below it takes a :class:`~core.settings.Settings`.
"""
