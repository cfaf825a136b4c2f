"""A memo of tensors bounded by their size, shared by threads.

Shared read-only objects (an :class:`~core.analysis.Analysis` is one per model for every
dashboard session) keep values that are deterministic from their own fields here, such
as each edited matrix's float64 decomposition: filling the memo changes no answer, and
its byte budget bounds what a long-running server holds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from torch import Tensor

_V = TypeVar("_V", bound=Tensor)


class TensorMemo(Generic[_V]):
    """Tensors by key, the least recently used dropped once they pass ``budget`` bytes
    (the newest is always kept). Nothing may write into a tensor it returns.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._values: OrderedDict[Hashable, _V] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], _V]) -> _V:
        """The value of ``key``, made by ``make()`` when it is not kept."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        # Made outside the lock so that other keys answer meanwhile; two threads asking
        # for the same new key both make it, and the values are equal.
        value = make()
        with self._lock:
            if key not in self._values:
                self._values[key] = value
                self._bytes += _size(value)
            while self._bytes > self.budget and len(self._values) > 1:
                _, old = self._values.popitem(last=False)
                self._bytes -= _size(old)
        return value

    def __len__(self) -> int:
        return len(self._values)

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors kept."""
        return self._bytes


def _size(t: Tensor) -> int:
    # The storage, not the view: a view keeps all of its base alive.
    return t.untyped_storage().nbytes()
