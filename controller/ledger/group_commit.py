"""Group commit: concurrent requests for one ledger object share one compare-and-swap.

A reservation write is a round trip to the apiserver (and etcd). Requests
that arrive for the same group while a write is in flight queue up; the
first of them to find the group idle takes the whole queue as a batch and
decides it in one read-evaluate-write cycle, in arrival order, each request
checked against the ones before it. One PUT then carries every reservation
of the batch, so a group's throughput grows with its concurrency instead of
being one admission per round trip, and replicas contend with each other
once per batch, not once per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Slot(Generic[T]):
    """One request in the queue: its input, its deadline (monotonic), and then its result."""

    __slots__ = ("done", "error", "item", "result", "until")

    def __init__(self, item: T, until: float) -> None:
        self.item = item
        self.until = until
        self.result: object = None
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[T]):
    """A queue per ledger object; `process(batch)` sets each slot's `result` (or raises for all)."""

    def __init__(self, process: Callable[[list[Slot[T]]], None]) -> None:
        self._process = process
        self._cond = threading.Condition()
        self._waiting: list[Slot[T]] = []
        self._busy = False
        self.batches = 0
        self.batched = 0  # requests decided in batches of more than one

    def idle(self) -> bool:
        """No batch in flight and none waiting (a moment's view: for a caller that may not wait its turn)."""
        return not self._busy and not self._waiting

    def submit(self, item: T, until: float, timeout_error: Callable[[], BaseException]) -> object:
        """Queue `item`, decide it (leading a batch, or in someone else's), return its result or raise."""
        slot = Slot(item, until)
        with self._cond:
            self._waiting.append(slot)
            while not slot.done:
                if not self._busy:
                    self._lead()
                    continue
                left = until - time.monotonic()
                if left <= 0 and slot in self._waiting:  # never picked up: give up at our own deadline
                    self._waiting.remove(slot)
                    raise timeout_error()
                self._cond.wait(timeout=max(left, 0.01))
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self) -> None:
        """Take the queue and decide it outside the lock (the caller holds it, and gets it back)."""
        batch, self._waiting = self._waiting, []
        self._busy = True
        self._cond.release()
        try:
            self._process(batch)
        except BaseException as exc:
            for slot in batch:
                if not slot.done:
                    slot.error = exc
        finally:
            self._cond.acquire()
            self._busy = False
            self.batches += 1
            if len(batch) > 1:
                self.batched += len(batch)
            for slot in batch:
                slot.done = True
            self._cond.notify_all()


__all__ = ["GroupCommit", "Slot"]
