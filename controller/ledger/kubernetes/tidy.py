"""Tidy, expiry and resync: each replica's entry kept up to date, dead entries dropped, usage relisted.

Invariant: a replica's entry is only lowered by its owner, after the
version it writes over holds what it drops (`tidy`: at once after an
expiry, after `Tuning.tidy_lag` after a fold, at once when asked); the
leader drops an entry only past its last deadline; a resync replaces only
the listed cluster's observed usage, merged with what the leader was told
since, through the fold queue, so it never drops an unconfirmed admission
nor undoes a fold.
"""

from __future__ import annotations

from collections.abc import Mapping

from quotalang.controller.ledger.arithmetic import summed
from quotalang.controller.ledger.base import ObjectKey, Usage
from quotalang.controller.ledger.crd import LedgerState
from quotalang.controller.ledger.kubernetes.book import _written
from quotalang.controller.ledger.kubernetes.edits import replacer
from quotalang.controller.ledger.kubernetes.folding import Folding


class Tidying(Folding):
    """Tidy, expiry and resync: each replica's entry kept up to date, dead entries dropped, usage relisted."""

    def tidy(self, now: float | None = None, patient: bool = False) -> int:
        """Write this replica's entry where it is out of date; return the writes.

        Due: a group whose sum went down by expiry (at once: that frees
        quota), one whose lease window is over (the lease is returned; when
        `patient`, only once the group is quiet: in a busy one the next batch
        replaces it in the write it makes anyway, one write per lease, not
        two), one
        another replica asked about (`_ask`: it waits for the answer), and
        one whose sum a fold lowered: at once, or `patient` (the runtime's)
        after `tidy_lag`, sooner if its own batch writes it. Until then the
        other replicas count the folded usage twice; one that needs that
        room asks. A write per fold and replica would cost more than the
        moment of counting twice. Not fenced: every replica owns its entry.
        """
        now = self._clock() if now is None else now
        moment = self._monotonic()
        writes = 0
        with self._index_lock:
            for group, mine in self._mine.items():
                if mine.expire(now):
                    self._dirty[group] = 0.0
            due = {g for g, since in self._dirty.items() if not patient or moment - since >= self.tuning.tidy_lag}
            for group in due:
                del self._dirty[group]
        due |= {g for g, lease in list(self._leases.items())
                if moment >= lease.usable_until and not (patient and self._busy(g, moment))}
        due |= self._asked()
        for group in due:
            with self._writer(group):
                writes += self._tidy(group, self._monotonic() + self.tuning.tidy_timeout)
        return writes

    def _tidy(self, group: str, until: float) -> int:
        """Write the smaller sum and return the lease (the caller holds the group's writer lock)."""
        self._leases.pop(group, None)  # from here on, nothing more is handed out of it
        state = self._cache.get(group) or self.read(group, until)
        while True:
            mine = self._mine.get(group)
            with self._index_lock:
                held = mine.held() if mine is not None else None
            entry = state.reservations.get(self.replica)
            if (_written(entry, held) and self._lease_name not in state.reservations
                    and (entry is None or entry.answered >= state.asks)):
                return 0
            update = state.copy()
            self._set_mine(update, held)
            if self.write(update, until) is not None:
                return 1
            if self._monotonic() >= until:
                with self._index_lock:
                    self._dirty[group] = 0.0  # next round
                return 0
            state = self.read(group, until)

    def expire(self, now: float | None = None) -> int:
        """The leader drops replicas' entries past their last deadline (a replica that died or went quiet)
        from every cached ledger; return how many were dropped."""
        now = self._clock() if now is None else now
        dropped = 0
        for group, state in list(self._cache.items()):
            if not any(r.expires <= now for r in state.reservations.values()):
                continue
            count: list[int] = []

            def prune(update: LedgerState, count: list[int] = count) -> bool:
                gone = [k for k, r in update.reservations.items() if r.expires <= now]
                for key in gone:
                    del update.reservations[key]
                count[:] = [len(gone)]
                return bool(gone)

            self.mutate(group, prune)
            dropped += count[0] if count else 0
        return dropped

    def resync(self, observed_by_group: Mapping[str, Mapping[ObjectKey, Usage]], cluster: str = "") -> None:
        """Replace `cluster`'s observed usage with a fresh LIST of it (`{group: {identity: usage}}`).

        Reservations and other clusters' shares are kept: each ledger object
        keeps `observedByCluster`, and only this cluster's share is replaced
        (a new leader's index holds nothing of a cluster it has not listed
        yet, and the share an earlier leader wrote stays charged until then).
        Every ledger object is listed first, so that all of them are covered
        (and, for a new leader, stamped with its epoch), not only those cached.
        The listing was taken before this call while folds went on, so the
        cluster's part of the index is replaced by the listing merged with
        what this leader was told of it since its last resync (`base.summed`),
        and each group's replacement joins the fold queue under `_order_lock`:
        the folds queued before it are written before (or with) it, and a fold
        after it is a difference against the merged index. No fold, confirmed
        or not, is undone by a listing that predates it.
        """
        self.load_all()
        epoch = self._epoch()  # a follower raises here, as its writes would
        with self._order_lock:
            with self._index_lock:
                told = {k: self._observed.get(k) for k, e in self._told.items() if e == epoch and k.cluster == cluster}
                fresh, sums = summed(observed_by_group, told, cluster=cluster, index=self._observed)
                self._observed = fresh
                self._told = {k: e for k, e in self._told.items() if k.cluster != cluster}
                for gone in [k for k in self._bodies.keys() - fresh.keys() if k.cluster == cluster]:
                    del self._bodies[gone]
            groups = sorted(set(self._cache) | set(sums))
            self._enqueue({g: [(replacer(cluster, *sums.get(g, {}).get(cluster, ({}, 0))), None)] for g in groups})
        self.flush()


__all__ = ["Tidying"]
