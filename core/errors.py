"""User-facing errors: each carries one sentence that says what to do."""

from __future__ import annotations


class CoreError(Exception):
    """An error whose message is shown to the user as is (CLI and dashboard)."""


class ModelLoadError(CoreError):
    """The model could not be loaded (missing, offline, unsupported)."""


class SpecError(CoreError):
    """A bad argument: unknown matrix, layer or head out of range, malformed spec."""


class CacheError(CoreError):
    """A cache entry is missing, truncated, corrupted or stale."""
