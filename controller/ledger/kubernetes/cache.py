"""The cache of ledger objects and the confirmations every version carries for this replica's admissions.

Invariant: the cache only moves to newer versions; whatever its age, a
version's `folded` list drops the admissions it names from this replica's
book (they are in that version's `observed`), and the smaller sum is only
ever written by a compare-and-swap on a version at least as new: totals
first, sum second — counted twice for a moment, never counted nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import EMPTY, ObjectKey
from quotalang.controller.ledger.crd import LedgerFormatError, LedgerState, from_object, parse_identity
from quotalang.controller.ledger.kubernetes.book import INHERITED, _Admissions, _confirmed, _Mine, _written
from quotalang.controller.ledger.kubernetes.core import DRAW_SUFFIX, LOG, LedgerCore
from quotalang.controller.ledger.versions import newer


def own_reserved(state: LedgerState, now: float) -> tuple[dict[str, int], int]:
    """The group's own pending usage and how many admissions hold it: every unexpired entry but the draws
    its children registered there (`registering`), which are theirs (the API, pages and metrics show them
    in the children; decisions count them as the group's, `evaluate._others`)."""
    total: dict[str, int] = {}
    count = 0
    for name, held in state.reservations.items():
        if held.expires > now and not name.endswith(DRAW_SUFFIX):
            add_usage(total, held.usage)
            count += held.count
    return total, count


class Cache(LedgerCore):
    """The cache of ledger objects and the confirmations every version carries for this replica's admissions."""

    def remember(self, state: LedgerState) -> None:
        """Keep `state` if it is newer than what the cache holds (the watch and every call feed it).

        Whatever its age, a version's `folded` list confirms this replica's
        admissions it names: they leave this replica's sum (written by the
        next admission or `tidy`). That version's `observed` includes them,
        and any write of the sum is a compare-and-swap on a version at least
        as new, so the sum never drops one before the totals hold it.
        """
        with self._cache_lock:
            cached = self._cache.get(state.group)
            if cached is None or newer(state.resource_version, cached.resource_version):
                self._cache[state.group] = state
        if state.folded:
            self._confirm(state)
        self._adopt(state)

    def _adopt(self, state: LedgerState) -> None:
        """Keep what an earlier incarnation under this replica's name left in its entries.

        A container restart keeps the pod's name, so a replica may start
        with empty memory and find entries under its own names that hold its
        previous incarnation's unconfirmed admissions. Its first write of the
        group would replace them with its own smaller sum, and those
        admissions would be counted nowhere until folded. So they join its
        book as one admission (`INHERITED`) held until their last deadline.
        An entry is an earlier incarnation's when it expires before anything
        this one may have written (its start + the TTL, and a lease window
        more for the lease entry); `tidy` then rewrites the entry from the
        book. Adopting the same again changes nothing.
        """
        now = self._clock()
        ends = {self.replica: self._started + self._ttl,
                self._lease_name: self._started + self._ttl + self.tuning.lease_window}
        left = [held for name, end in ends.items()
                if (held := state.reservations.get(name)) is not None and now < held.expires < end]
        if not left:
            return
        usage: dict[str, int] = {}
        for held in left:
            add_usage(usage, held.usage)
        deadline = max(held.expires for held in left)
        with self._index_lock:
            mine = self._mine.setdefault(state.group, _Admissions())
            before = mine.items.get(INHERITED)
            if before is not None and before.usage == usage and before.deadline == deadline:
                return
            mine.put(INHERITED, _Mine(usage, deadline, None))
            self._dirty.setdefault(state.group, self._monotonic())

    def load(self, items: Iterable[Mapping[str, Any]]) -> None:
        """A full listing of the ledger objects: each one remembered, and what is not in it dropped."""
        seen = set()
        for item in items:
            try:
                state = from_object(item)
            except LedgerFormatError as exc:
                LOG.error("skipping an unreadable ledger object: %s", exc)
                continue
            seen.add(state.group)
            self.remember(state)
        for gone in set(self._cache) - seen:
            self.drop(gone)

    def _confirm(self, state: LedgerState) -> None:
        """Drop this replica's admissions `state.folded` names; the group needs `tidy` unless `state` already
        holds the smaller sum (the leader's own fold write, `_account_own`)."""
        group = state.group
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is None or not mine.items:
                return
            confirmed = _confirmed(mine, state.folded)
            mine.drop_all(confirmed)
            if confirmed and not _written(state.reservations.get(self.replica), mine.held()):
                self._dirty.setdefault(group, self._monotonic())

    def _admissions(self, group: str, now: float) -> tuple[_Admissions, dict[str, int]]:
        """This replica's live admissions in `group` (the expired dropped: `tidy` writes the smaller sum) and a
        copy of their sum. Called with `_index_lock` held."""
        mine = self._mine.get(group)
        if mine is None:
            mine = self._mine[group] = _Admissions()
        if mine.expire(now):
            self._dirty[group] = 0.0  # an expiry frees quota: written at the next tidy
        return mine, dict(mine.total)

    def _drop_mine(self, group: str, slots: Iterable[str]) -> None:
        """This replica's admissions a landed write holds in `observed` leave its admissions (the sum written
        already left them out)."""
        with self._index_lock:
            mine = self._mine.get(group)
            if mine is not None:
                mine.drop_all(slots)

    def drop(self, group: str, resource_version: str | None = None) -> None:
        """The object is gone (a watch DELETED event)."""
        with self._cache_lock:
            cached = self._cache.get(group)
            if cached is not None and (resource_version is None or not newer(cached.resource_version,
                                                                               resource_version)):
                del self._cache[group]

    def cached(self, group: str) -> LedgerState | None:
        return self._cache.get(group)

    def cached_groups(self) -> list[str]:
        return list(self._cache)

    def pending(self) -> Iterable[ObjectKey]:
        """Identities this replica admitted and nobody has confirmed yet (other replicas' are only sums)."""
        with self._index_lock:
            slots = {k for mine in self._mine.values() for k in mine.items if k != INHERITED}
        return [parse_identity(k) for k in slots]

    def reservations(self, group: str) -> dict[str, dict[str, int]]:
        """This replica's unconfirmed admissions in `group`: identity slot -> the usage it holds."""
        with self._index_lock:
            mine = self._mine.get(group)
            return {k: dict(v.usage) for k, v in mine.items.items()} if mine is not None else {}

    def used(self, group: str) -> Mapping[str, int]:
        """The group's own usage (observed + its own pending admissions), its children's draws aside."""
        state = self._cache.get(group)
        if state is None:
            return EMPTY
        used = dict(state.observed)
        add_usage(used, own_reserved(state, self._clock())[0])
        return used

    def cash_used(self, group: str) -> Mapping[str, int]:
        state = self._cache.get(group)
        return state.cash if state is not None else EMPTY


__all__ = ["Cache", "own_reserved"]
