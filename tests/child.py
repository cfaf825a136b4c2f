"""Code run in a fresh interpreter (what a cold process imports and loads), reporting
back as JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child_json(
    code: str, *args: str, env: dict[str, str] | None = None, timeout: int = 600
) -> dict:
    """The JSON that ``code`` prints last, run by ``python -c`` from the repository root
    with ``args`` and the environment plus ``env``."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
