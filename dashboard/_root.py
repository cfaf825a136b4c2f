"""Puts the repository root on ``sys.path`` so pages can ``import dashboard`` and ``core``.

``streamlit run dashboard/app.py`` only puts ``dashboard/`` on the path, and on a server's
first run Streamlit may run a ``pages/`` file directly, before the router; so every
page starts with ``import _root  # noqa: F401`` (importable because ``dashboard/`` is on
the path).
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
