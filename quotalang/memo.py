"""A bounded memo of answers derived from an immutable compiled policy (compile once, answer once).

Why not `functools.lru_cache` or `cachetools`: a hit here is the hot path of
every decision, and a plain `dict.get` (no lock, no recency bookkeeping)
costs a fraction of theirs. Why bounded: the keys are what a request names
(a namespace, a label value), and an attacker chooses as many of those as
they like; past `size` entries the oldest is dropped, so memory stays
bounded and the worst a flood does is make answers be computed again.
Callers keep keys small (they memoize only short strings) and values
immutable. Misses take a lock so that concurrent threads never evict while
another inserts; a race computes one answer twice, harmlessly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MEMO_ENTRIES = 4096


class Memo(Generic[K, V]):
    __slots__ = ("_entries", "_lock", "get", "size")

    def __init__(self, size: int = MEMO_ENTRIES) -> None:
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()
        self.size = size
        # the answer for a key, or None: the dict's own `get`, so a hit runs no Python frame (`put` keeps
        # the same dict)
        self.get: Callable[[K], V | None] = self._entries.get

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `key` (dropping the oldest entry when full) and return it."""
        with self._lock:
            entries = self._entries
            if key not in entries and len(entries) >= self.size:
                del entries[next(iter(entries))]
            entries[key] = value
        return value

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["MEMO_ENTRIES", "Memo"]
