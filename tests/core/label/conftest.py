"""The labelling tests share the edit tests' analyses of the tiny checkpoints."""

from tests.core.edit.conftest import analyses  # noqa: F401  (a fixture)
