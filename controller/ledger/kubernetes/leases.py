"""Leases: headroom a busy replica reserves ahead in a group's ledger and hands out without a write.

The lease condition (stated here once; docs/architecture.md points here): a
batch's write takes a lease when, this batch included, its replica admitted
at least `Tuning.lease_after` (4) requests of the group in its current lease
window and the one before (`Tuning.lease_window`, 10 s each; a window starts
at the first admission after the last one ended, and the one before counts
only if it started at most two windows ago). So any 4 admissions within the
last 10 s qualify (a steady one every 2.5 s always does), and 4 spread over
up to 20 s may. The lease is m more of the batch's last admission, m the
largest of `Tuning.lease_sizes` no larger than that count that leaves room
for `Tuning.lease_headroom` × m after it; none while another replica's ask
is unanswered by this one, or without room.

Invariant: a lease is reserved by a compare-and-swap that found room for it,
every other replica counts it whole, and what it hands out is never handed
out again (a fold does not refill it; only the next write, checked again,
reserves anew). Its entry expires a window after anything it may hand out.
"""

from __future__ import annotations

from collections.abc import Mapping

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import EMPTY, Ask
from quotalang.controller.ledger.crd import LedgerState
from quotalang.controller.ledger.group_commit import Slot
from quotalang.controller.ledger.kubernetes.asking import Asking
from quotalang.controller.ledger.kubernetes.book import _Mine
from quotalang.controller.ledger.kubernetes.core import _Window, _Written
from quotalang.controller.ledger.kubernetes.drawing import growth
from quotalang.controller.ledger.kubernetes.evaluate import _View
from quotalang.decision import Decision


def _fits(charge: Mapping[str, int], left: Mapping[str, int]) -> bool:
    return all(value <= left.get(key, 0) for key, value in charge.items())


class Leasing(Asking):
    """Leases: headroom a busy replica reserves ahead in a group's ledger and hands out without a write."""

    def _lately(self, group: str) -> int:
        """Admissions of the group in this replica's current window and the one just before it."""
        window = self._recent.get(group)
        if window is None or self._monotonic() - window.start > self.tuning.lease_window:
            return 0
        return window.count + window.before

    def _count(self, group: str, admissions: int) -> None:
        window = self._recent.get(group)
        now = self._monotonic()
        if window is None or now - window.start > self.tuning.lease_window:
            before = window.count if window is not None and now - window.start <= 2 * self.tuning.lease_window else 0
            window = self._recent[group] = _Window(now, 0, before)
        window.count += admissions
        window.last = now

    def _within_lease(self, group: str, batch: list[Slot[Ask]]) -> list[Slot[Ask]]:
        """Admit the head of the batch within this replica's lease, writing nothing; return the rest.

        Safe without a write: the lease was reserved by a compare-and-swap
        that found room for it, every other writer counts it, and what it
        hands out is never handed out again (a fold that confirms one of its
        admissions moves that usage to observed but does not refill the
        lease: only the next write, checked again, does). Each request is
        still evaluated (against the cached ledger and this replica's own
        admissions), and only an allowed one whose charge fits what is left
        is admitted here; the first that is not goes, with the ones after it,
        through the written path.
        """
        lease, state = self._leases.get(group), self._cache.get(group)
        if lease is None or state is None or self._monotonic() >= lease.usable_until:
            return batch
        now = self._clock()
        with self._index_lock:
            mine, used = self._admissions(group, now)
        add_usage(used, self._others(state, now))
        changes: dict[str, _Mine] = {}
        written: list[_Written] = []
        taken = 0

        def fits(decision: Decision) -> bool:
            return decision.allowed and _fits(decision.reservation.get(group) or EMPTY, lease.left)

        for slot in batch:
            if slot.item.dry_run:
                break
            decision, reserved = self._evaluate(group, state, slot.item, now, used, mine, changes, accept=fits)
            if reserved is None:
                break  # it and the rest go the written path
            add_usage(lease.left, decision.reservation[group], -1)
            written.append(reserved)
            slot.result = decision
            taken += 1
        if taken:
            self.stats.leased += taken
            self._keep(mine, changes, written, now)
        return batch[taken:]

    def _lease_for(
        self, group: str, update: LedgerState, request: Ask, decision: Decision, used: Mapping[str, int]
    ) -> dict[str, int] | None:
        """The lease to write with a batch: m more of its last admission, m the largest of `lease_sizes` no
        larger than the admissions of the current and the last window (about what the next window will use)
        with room left for 4 m after it (so a lease never takes the last fifth of what is free); None without
        room.

        Only for a busy group (the lease condition: the module docstring): a
        group admitted now and then reserves exactly what each admission
        needs, since a lease it would not use costs a write to return. The
        room is checked by the evaluator itself, against the same limits as
        the admission.
        """
        charge = decision.reservation.get(group)
        recent = self._lately(group)
        if not charge or recent < self.tuning.lease_after or self._asked_of(update):
            return None  # quiet, or another replica asked since this one last wrote: it needs room, not a lease
        for size in (m for m in self.tuning.lease_sizes if m <= recent):
            ahead = dict(used)
            for _ in range(self.tuning.lease_headroom * size - 1):
                add_usage(ahead, charge)
            trial = request.decision(_View(group, ahead, update.cash), dry_run=False)
            lease = {k: v * size for k, v in charge.items()}
            terms = self._terms(group)  # never sized beyond the slack: admissions within it register nothing
            if trial.allowed and not trial.touches and trial.reservation.get(group) == charge and (
                    terms is None or not growth(terms, used, lease)):
                return lease
        return None

    def _busy(self, group: str, moment: float) -> bool:
        """Whether this replica admitted in the group within the last half `lease_window` (its next admission is
        likely soon, and its batch write returns the lease with no write of its own)."""
        window = self._recent.get(group)
        return window is not None and moment - window.last <= self.tuning.lease_window / 2


__all__ = ["Leasing"]
