"""Where a search index keeps its small derived parts (the significance nulls of
:mod:`core.search.null`): beside its analysis's cache entry
(:func:`core.cache.parts.save_part`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from core.cache import parts as cache_parts
from core.errors import CacheError


@dataclass(frozen=True)
class PartStore:
    """Where an index keeps small derived parts (the significance nulls): its analysis's
    cache entry. ``base`` is what every part was computed from (checked on reading);
    ``writable`` is false for an unsettled or non-persisting entry (computed, not saved).
    """

    cache_dir: Path
    meta: Any
    processing: str
    key: dict[str, Any]
    base: dict[str, Any]
    writable: bool

    def load(self, name: str, extra: dict[str, Any]) -> dict[str, Tensor] | None:
        """The part's tensors when it was computed from ``base`` and ``extra``, else ``None``."""
        try:
            stored, t = cache_parts.load_part(
                self.cache_dir, self.meta, self.processing, self.key, name
            )
        except (CacheError, ValueError, OSError):
            return None
        return t if stored == {**self.base, **extra} else None

    def save(self, name: str, tensors: dict[str, Tensor], extra: dict[str, Any]) -> None:
        """Write the part (silently not, where the entry is read-only or unsettled)."""
        if not self.writable:
            return
        with contextlib.suppress(OSError, CacheError, ValueError):
            cache_parts.save_part(
                self.cache_dir,
                self.meta,
                self.processing,
                self.key,
                name,
                tensors,
                {**self.base, **extra},
            )
