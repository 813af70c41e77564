"""What the in-process store and its journal share: one group's numbers, the table of them, the rules.

The in-process store (`memory.MemoryLedger`) keeps per group a `GroupNumbers`
under that group's lock, per object a pending reservation
(`PendingAdmission`) or, standalone, what it holds per group
(`standalone_after`'s rules); a `Journal` (`sqlite.SqliteJournal`) writes
each change before it shows and hands it all back (`Loaded`) when the store
opens. Invariant: a group's `used` is its `observed` plus its `reserved`,
kept in step by every change under the group's lock, so admission reads it
as is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from quotalang.controller.ledger.arithmetic import ClusterSums, add_usage, maximum, totals
from quotalang.controller.ledger.base import (
    EMPTY,
    NO_USAGE,
    CashState,
    GroupUsage,
    ObjectKey,
    Observation,
    Observed,
    Usage,
)
from quotalang.decision import Decision
from quotalang.reclaimable import Borrower

Held = dict[str, dict[str, int]]  # standalone: group -> usage an object holds


class GroupNumbers:
    """One group's numbers as an in-process store keeps them (memory, and SQLite's mirror). Guarded by `lock`."""

    __slots__ = ("by_cluster", "cash", "last_accrual", "lock", "objects", "observed", "pending", "period_start",
                 "reserved", "used")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.observed: dict[str, int] = {}
        self.by_cluster: dict[str, dict[str, int]] = {}  # `observed` per cluster (clusters with usage only)
        self.reserved: dict[str, int] = {}
        self.used: dict[str, int] = {}  # observed + reserved, kept in step: admission reads it as is
        self.cash: dict[str, int] = {}
        self.period_start: float | None = None
        self.last_accrual: float | None = None
        self.objects = 0
        self.pending: set[ObjectKey] = set()

    def add_observed(self, usage: Usage, sign: int, cluster: str = "", *, count: bool = True) -> None:
        """Add (-1: remove) an object's observed usage in `cluster`; `count=False`: a change of one already counted."""
        add_usage(self.observed, usage, sign)
        add_usage(self.used, usage, sign)
        if count:
            self.objects += sign
        if usage:
            share = self.by_cluster.setdefault(cluster, {})
            add_usage(share, usage, sign)
            if not share:
                del self.by_cluster[cluster]

    def set_observed(self, by_cluster: Mapping[str, tuple[Mapping[str, int], int]]) -> None:
        """A resync's numbers (`summed`'s, for this group): observed per cluster and in total."""
        self.observed, self.objects = totals(by_cluster)
        self.by_cluster = {c: dict(usage) for c, (usage, _) in by_cluster.items() if usage}
        self.used = dict(self.observed)
        add_usage(self.used, self.reserved, +1)

    def add_reserved(self, usage: Usage, sign: int) -> None:
        add_usage(self.reserved, usage, sign)
        add_usage(self.used, usage, sign)


class GroupTable:
    """The group numbers an in-process store keeps (memory, SQLite's mirror) and the reads admission makes.

    A subclass sets `self._groups = {}` and guards each entry's fields by its
    own lock; these reads are the same for every such store.
    """

    _groups: dict[str, GroupNumbers]

    def _drop_observed(
        self, identity: ObjectKey, previous: Observed | None, held: Mapping[str, Mapping[str, int]]
    ) -> None:
        """A forgotten object's observed usage leaves its group, and what it held elsewhere (standalone)."""
        if previous is not None and previous.group is not None:
            held = {**held, previous.group: previous.usage}
        for group, usage in held.items():
            state = self._group(group)
            with state.lock:
                state.add_observed(usage, -1, identity.cluster)

    def _group(self, name: str) -> GroupNumbers:
        group = self._groups.get(name)
        if group is None:
            group = self._groups.setdefault(name, GroupNumbers())  # atomic: one wins
        return group

    def used(self, group: str) -> Mapping[str, int]:
        state = self._groups.get(group)
        return state.used if state is not None else EMPTY

    def cash_used(self, group: str) -> Mapping[str, int]:
        state = self._groups.get(group)
        return state.cash if state is not None else EMPTY

    def group_usage(self, group: str) -> GroupUsage:
        state = self._groups.get(group)
        if state is None:
            return NO_USAGE
        with state.lock:
            return GroupUsage(dict(state.observed), dict(state.reserved), dict(state.cash), state.objects,
                              len(state.pending), {c: dict(u) for c, u in state.by_cluster.items()})

    def _set_observed(self, sums: ClusterSums) -> None:
        """Every group's observed numbers after a resync (`summed`'s sums; a group it does not name holds none)."""
        for name in set(self._groups) | set(sums):
            state = self._group(name)
            with state.lock:
                state.set_observed(sums.get(name, {}))

    def group_names(self) -> list[str]:
        """Groups the ledger holds numbers for (not necessarily in the policy)."""
        return list(self._groups)


@dataclass(slots=True)
class PendingAdmission:
    charges: dict[str, dict[str, int]]  # group -> key -> reserved (positive) nanos
    deadline: float
    resource_version: str | None
    body: bytes | None = None  # JSON, see bodies.pack


def standalone_after(held: Mapping[str, dict[str, int]], decision: Decision) -> dict[str, dict[str, int]]:
    """What an object holds per group after a decision that reserves, in standalone mode.

    Nothing confirms an admission there, so the rules err toward over-counting
    (as native ResourceQuota does): a CREATE of a name already held keeps the
    per-key maximum in its group and keeps what it holds elsewhere (the
    apiserver will answer AlreadyExists to one of them); an UPDATE holds what
    the updated object charges; an UPDATE no kind rule reads keeps what it held,
    as its charges say.
    """
    group, new = decision.group, decision.stored_usage
    if decision.operation == "CREATE":
        after = {g: dict(u) for g, u in held.items()}
        if group is not None:
            after[group] = maximum(held.get(group, EMPTY), new)
        return after
    if decision.reason == "no-rule":
        return {g: dict(u) for g, u in held.items()}
    return {group: dict(new)} if group is not None else {}


class Loaded(NamedTuple):
    """What a journal holds when the store opens: the store rebuilds its memory from it."""

    observed: dict[ObjectKey, Observed]
    held: dict[ObjectKey, Held]
    bodies: dict[ObjectKey, bytes]
    pending: dict[ObjectKey, PendingAdmission]
    cash: dict[str, CashState]
    borrowers: dict[ObjectKey, Borrower]


class Journal(Protocol):
    """Where an in-process store writes each change before it shows (SQLite: one transaction each).

    Every method is all or nothing, and raises `LedgerUnavailable` when it
    cannot write: the store then changes nothing in memory either.
    """

    def load(self) -> Loaded: ...

    def held(self, key: ObjectKey, held: Held, body: bytes) -> None: ...

    def reserved(self, key: ObjectKey, pending: PendingAdmission) -> None: ...

    def observed(self, seen: Sequence[tuple[Observation, bytes | None]], folded: Iterable[ObjectKey]) -> None: ...

    def forgotten(self, key: ObjectKey) -> None: ...

    def expired(self, keys: Sequence[ObjectKey]) -> None: ...

    def resynced(self, rows: Sequence[tuple[ObjectKey, Observed]], gone: Sequence[ObjectKey]) -> None: ...

    def cash(self, group: str, state: CashState) -> None: ...

    def borrowers(self, rows: Sequence[tuple[ObjectKey, Borrower | None]]) -> None: ...  # None: no longer borrows

    def close(self) -> None: ...


__all__ = ["GroupNumbers", "GroupTable", "Held", "Journal", "Loaded", "PendingAdmission", "standalone_after"]
