"""Writer turns: one replica's writes to one group's ledger, granted in the order they were asked for.

Invariant: a replica's admission batches, folds and tidies of one group run
one at a time, each starting from the version the one before wrote, so a
replica never refuses its own writes with 409 and a burst cannot starve the
folds that confirm it.
"""

from __future__ import annotations

import threading
from collections import deque


class _TakingTurns:
    """A lock granted in the order it was asked for.

    `threading.Lock` is not fair: under a burst the admission batches of a
    group follow each other so closely that the leader's fold thread, waiting
    for the same group, would rarely get it, admissions would stay
    unconfirmed, and every batch would carry more of them.
    """

    __slots__ = ("_cond", "_held", "_queue")

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._held = False

    def __enter__(self) -> None:
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._held or self._queue[0] is not ticket:
                self._cond.wait()
            self._queue.popleft()
            self._held = True

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()

    def take_if_free(self) -> bool:
        """Take it now if nobody holds it or waits for it; else False (the caller may not wait)."""
        with self._cond:
            if self._held or self._queue:
                return False
            self._held = True
            return True




__all__ = []
