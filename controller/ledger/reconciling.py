"""What the controller tells the in-process store: an object observed, forgotten, expired, a cluster relisted.

`memory.MemoryLedger` builds on this (it makes every attribute declared
here, with the lock that guards it); admission is there, these are the
controller's calls of `ControllerLedger`. Invariants: an observation at or
after an admission's version folds its reservation only once observed usage
holds it (counted twice for a moment, never not at all); a resync never
drops an unexpired reservation (kubernetes#123434) and merges what it was
told since the listing (`arithmetic.summed`), under the lock `observe` and
`forget` take; every change is journalled before it shows.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping

from quotalang.controller.ledger.arithmetic import summed
from quotalang.controller.ledger.base import ObjectKey, Observation, Observed, ObservesOne, Usage
from quotalang.controller.ledger.bodies import pack_observed
from quotalang.controller.ledger.borrowers import BorrowerBook
from quotalang.controller.ledger.inprocess import GroupTable, Held, Journal, PendingAdmission
from quotalang.controller.ledger.versions import at_or_after


class Reconciling(GroupTable, ObservesOne):
    """The controller's calls on an in-process store (see the module doc; `MemoryLedger` is the store)."""

    _standalone: bool
    _clock: Callable[[], float]
    _journal: Journal | None
    _index_lock: threading.Lock  # the per-object tables below and the journal's writes; always innermost
    _observed: dict[ObjectKey, Observed]
    _held: dict[ObjectKey, Held]
    _pending: dict[ObjectKey, PendingAdmission]
    _bodies: dict[ObjectKey, bytes]
    _borrowers: BorrowerBook
    _next_deadline: float
    _order_lock: threading.Lock  # orders observe/forget against resync: first, before any group or index lock
    _told: set[ObjectKey]  # observed or forgotten since the last resync, whose listing may predate them

    def observe_many(self, observations: Iterable[Observation]) -> None:
        """Record a batch of observations (one journal transaction), then apply them.

        Each replaces its object's previous observed usage. A pending
        reservation is folded (dropped: the observed usage now includes it)
        when the observation is at or after the version it was admitted at.
        """
        batch = [(seen, pack_observed(seen.body)) for seen in observations]
        if not batch:
            return
        changes: list[tuple[Observed | None, Observation, PendingAdmission | None]] = []
        with self._order_lock:
            with self._index_lock:
                folding: set[ObjectKey] = set()
                for seen, _ in batch:
                    pending = self._pending.get(seen.identity)
                    if pending is not None and at_or_after(seen.resource_version, pending.resource_version):
                        folding.add(seen.identity)
                if self._journal is not None:
                    self._journal.observed(batch, folding)
                for seen, packed in batch:
                    previous = self._observed.get(seen.identity)
                    self._observed[seen.identity] = Observed(seen.group, dict(seen.usage))
                    self._told.add(seen.identity)
                    if packed is not None:
                        self._bodies[seen.identity] = packed
                    folded = self._pending.pop(seen.identity, None) if seen.identity in folding else None
                    folding.discard(seen.identity)
                    changes.append((previous, seen, folded))
                self._borrowers.released([seen for seen, _ in batch])
            for previous, seen, _ in changes:
                if seen.group is not None:
                    state = self._group(seen.group)
                    with state.lock:
                        state.add_observed(seen.usage, +1, seen.identity.cluster)
                if previous is not None and previous.group is not None:
                    state = self._group(previous.group)
                    with state.lock:
                        state.add_observed(previous.usage, -1, seen.identity.cluster)
        for _, seen, folded in changes:  # after observed holds it: counted twice for a moment, never not at all
            if folded is not None:
                self._release(seen.identity, folded)

    def forget(self, identity: ObjectKey) -> None:
        """The object is gone: release its observed usage (standalone: every group it held) and any reservation."""
        with self._order_lock:
            with self._index_lock:
                if not self._standalone:
                    self._told.add(identity)
                if identity not in self._observed and identity not in self._pending and identity not in self._held:
                    return
                if self._journal is not None:
                    self._journal.forgotten(identity)
                previous = self._observed.pop(identity, None)
                self._borrowers.drop(identity)
                held = self._held.pop(identity, {})
                pending = self._pending.pop(identity, None)
                self._bodies.pop(identity, None)
            self._drop_observed(identity, previous, held)
        if pending is not None:
            self._release(identity, pending)

    def expire(self, now: float | None = None) -> int:
        """Drop reservations past their deadline; return how many were dropped."""
        now = self._clock() if now is None else now
        with self._index_lock:
            expired = [(k, p) for k, p in self._pending.items() if p.deadline <= now]
            if expired and self._journal is not None:
                self._journal.expired([k for k, _ in expired])
            for key, _ in expired:
                del self._pending[key]
            self._next_deadline = min((p.deadline for p in self._pending.values()), default=math.inf)
        for key, pending in expired:
            self._release(key, pending)
        return len(expired)

    def _release(self, identity: ObjectKey, pending: PendingAdmission) -> None:
        for group, usage in pending.charges.items():
            state = self._group(group)
            with state.lock:
                if identity in state.pending:
                    state.add_reserved(usage, -1)
                    state.pending.discard(identity)

    def resync(self, observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]], cluster: str = "") -> None:
        """Replace `cluster`'s observed usage with a fresh LIST of it: `{group: {identity: usage}}`.

        Other clusters' objects stay. Pending reservations are kept (only
        `observe` and `expire` drop them); what admissions alone recorded
        gives way to the LIST; bodies of that cluster's objects the LIST no
        longer holds leave the index. The listing was taken before this call:
        what `observe`/`forget` were told of the cluster since its last resync
        is merged in (`arithmetic.summed`), under the lock they take, so an
        observation that folded a reservation after the listing is never
        replaced by the listing's older view.
        """
        with self._order_lock:
            with self._index_lock:
                told = {k: self._observed.get(k) for k in self._told if k.cluster == cluster}
                fresh, sums = summed(observed_by_group, told, cluster=cluster, index=self._observed)
                if self._journal is not None:
                    rows = [(k, o) for k, o in fresh.items() if k.cluster == cluster]
                    gone = [k for k in self._observed.keys() - fresh.keys() if k.cluster == cluster]
                    self._journal.resynced(rows, gone + list(self._held.keys() - fresh.keys()))
                self._observed = fresh
                self._borrowers.keep(lambda k: k in fresh or k in self._pending or k.cluster != cluster)
                self._told = {k for k in self._told if k.cluster != cluster}
                self._held = {}
                for key in [k for k in self._bodies.keys() - fresh.keys() if k.cluster == cluster]:
                    del self._bodies[key]
            self._set_observed(sums)


__all__ = ["Reconciling"]
