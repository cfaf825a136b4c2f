"""Puts the repository root on ``sys.path`` so the router can import ``dashboard`` and ``core``.

``streamlit run dashboard/app.py`` only puts ``dashboard/`` on the path; ``app.py``
starts with ``import _root  # noqa: F401``. Page scripts run inside the router, after it.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
