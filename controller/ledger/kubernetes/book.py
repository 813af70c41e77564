"""A replica's admission book: its unconfirmed admissions of one group, per object, with their sum.

Invariant: the sum is always the sum of the admissions held (kept in step,
so a decision reads a few keys, not thousands of admissions), the
admissions are in deadline order (expiry pops from the front), and an
admission of an object replaces or adds to the one before exactly as the
package docstring of `ledger` says (a retried request is never charged
twice). Pure data: the ledger's `_index_lock` guards it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.crd import Held
from quotalang.controller.ledger.versions import at_or_after

# The slot of what an earlier incarnation of this replica, under the same name, left in its entries
# (`cache._adopt`): no identity is ever written so.
INHERITED = "~inherited"


@dataclass(slots=True)
class _Mine:
    """One of this replica's unconfirmed admissions (the ledger object holds only their sum)."""

    usage: dict[str, int]
    deadline: float  # wall clock
    resource_version: str | None  # the object's version it was admitted against (None on CREATE)
    # Of `usage`, what admissions against earlier versions hold (an UPDATE on top of a CREATE not yet folded):
    # a later admission against the same version replaces only the rest (`latest`), never this.
    base: dict[str, int] = field(default_factory=dict)

    def latest(self) -> dict[str, int]:
        """The part the last admission against `resource_version` holds."""
        rest = dict(self.usage)
        add_usage(rest, self.base, -1)
        return rest


def _replaces(existing: _Mine, operation: str, admitted_rv: str | None) -> bool:
    """Whether a new admission of the same object supersedes its pending reservation (see module doc)."""
    return operation == "CREATE" or existing.resource_version == admitted_rv


class _Deadlined(Protocol):
    @property
    def deadline(self) -> float: ...


K = TypeVar("K")


def _past_deadline(entries: Mapping[K, _Deadlined], now: float) -> list[K]:
    """The keys at the front of a dict kept in deadline order whose deadline has passed (it stops at the first
    live one: what expires is popped without a scan of what does not)."""
    gone = []
    for key, entry in entries.items():
        if entry.deadline > now:
            break
        gone.append(key)
    return gone


class _Admissions:
    """This replica's unconfirmed admissions in one group: per object slot, in deadline order, with their sum.

    The sum is kept in step, so a decision reads it (a few keys) instead of
    adding up every pending admission: a group whose folds lag (a leader
    failing over) may hold thousands. An admission goes in last with the
    latest deadline, so expiry pops from the front. Guarded by the ledger's
    `_index_lock`; a batch reads it and adds its own `changes` on top.
    """

    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: dict[str, _Mine] = {}
        self.total: dict[str, int] = {}

    def get(self, slot: str, changes: Mapping[str, _Mine]) -> _Mine | None:
        """The pending admission of `slot`, a batch's own change first."""
        item = changes.get(slot)
        return item if item is not None else self.items.get(slot)

    def put(self, slot: str, item: _Mine) -> None:
        self.drop(slot)
        self.items[slot] = item
        add_usage(self.total, item.usage)

    def drop(self, slot: str) -> bool:
        item = self.items.pop(slot, None)
        if item is not None:
            add_usage(self.total, item.usage, -1)
        return item is not None

    def drop_all(self, slots: Iterable[str]) -> None:
        for slot in slots:
            self.drop(slot)

    def expire(self, now: float) -> bool:
        """Drop the admissions past their deadline; whether there were any."""
        gone = _past_deadline(self.items, now)
        self.drop_all(gone)
        return bool(gone)

    def held(self, changes: Mapping[str, _Mine] | None = None, drop: Iterable[str] = ()) -> Held | None:
        """What the ledger object holds for them, with a batch's `changes` and without the slots in `drop`: their
        sum, count and last deadline."""
        total, count = dict(self.total), len(self.items)
        last = next(reversed(self.items.values())).deadline if self.items else 0.0
        if drop:
            gone = set(drop)
            for slot in gone:
                add_usage(total, self.items[slot].usage, -1)
            count -= len(gone)
            last = next((i.deadline for s, i in reversed(self.items.items()) if s not in gone), 0.0)
        for slot, item in (changes or {}).items():
            before = self.items.get(slot)
            if before is None:
                count += 1
            else:
                add_usage(total, before.usage, -1)
            add_usage(total, item.usage)
            last = max(last, item.deadline)
        return Held(total, count, last) if count else None


def _confirmed(mine: _Admissions, folded: Iterable[str]) -> set[str]:
    """The slots of `mine` a fold's entries (`slot@resourceVersion`) confirm: observed at or after the version
    each was admitted against."""
    confirmed: set[str] = set()
    for entry in folded:
        slot, version = _fold_parts(entry)
        item = mine.items.get(slot)
        if item is not None and at_or_after(version or None, item.resource_version):
            confirmed.add(slot)
    return confirmed


def _written(entry: Held | None, held: Held | None) -> bool:
    """Whether a ledger's entry is this sum (its deadline as written: to the microsecond)."""
    if entry is None or held is None:
        return entry is held
    return entry.usage == held.usage and entry.count == held.count and abs(entry.expires - held.expires) < 1e-5


def _fold_entry(slot: str, resource_version: str | None) -> str:
    return f"{slot}@{resource_version or ''}"


def _fold_parts(entry: str) -> tuple[str, str]:
    """`_fold_entry` read back: the slot and the resourceVersion ("" when none was known)."""
    slot, _, version = entry.rpartition("@")
    return slot, version




__all__ = []
