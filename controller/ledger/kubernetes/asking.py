"""Asks and answers: a request kept out only by other replicas' unsettled entries asks them to write theirs.

Invariant: a denial is final only once every other entry that may hold more
than its replica needs (a lease, a sum not written since the ask) has
answered, or `Tuning.answer_wait` has passed; an entry whose replica never
answers still counts, so waiting never admits over quota. A replica's entry
written over a version answers every ask that version holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import Ask
from quotalang.controller.ledger.crd import Held, LedgerState
from quotalang.controller.ledger.kubernetes.book import _Admissions, _Mine
from quotalang.controller.ledger.kubernetes.core import DRAW_SUFFIX, LEASE_SUFFIX
from quotalang.controller.ledger.kubernetes.evaluate import Evaluating


class Asking(Evaluating):
    """Asks and answers: a request kept out only by other replicas' unsettled entries asks them to write theirs."""

    def _unsettled(self, state: LedgerState, now: float, asked: int | None) -> dict[str, int]:
        """What other replicas hold that may be less than it says: every lease (it may go unused), and every sum
        not written since this replica's ask (`asked`; None: not asked yet), which may still hold admissions a
        fold already moved to `observed`."""
        unsettled: dict[str, int] = {}
        for name, held in state.reservations.items():
            if name in (self.replica, self._lease_name) or held.expires <= now or name.endswith(DRAW_SUFFIX):
                continue  # registered draws are exact: lowered at once when their request is not admitted
            if name.endswith(LEASE_SUFFIX) or asked is None or held.answered < asked:
                add_usage(unsettled, held.usage)
        return unsettled

    def _lent_since(self, state: LedgerState, asked: int) -> bool:
        """Whether another replica wrote a lease after answering this one's ask (`asked`): it may keep it for its
        whole window, so the waiting batch asks again (a batch that answers an ask takes no lease, the next may)."""
        return any(name.endswith(LEASE_SUFFIX) and name != self._lease_name and held.answered >= asked
                   for name, held in state.reservations.items())

    def _ask(self, group: str, state: LedgerState, mine: _Admissions, until: float) -> int | None:
        """Ask the other replicas to write their entries (`asks` + 1), returning this replica's lease and writing
        its own exact sum in the same compare-and-swap; the `asks` written, or None if another write came first.

        Every replica's `tidy` answers an ask it sees (its ledger watch) by
        writing its entry: the smaller sum after a fold, its lease returned,
        `answered` set. A replica that waits for the others (`_decide_batch`)
        thus learns within a tick or two what they really hold, instead of
        every replica writing its smaller sum after every fold just in case.
        """
        return self._write_own(group, state, mine, until, state.asks + 1)

    def _write_own(self, group: str, state: LedgerState, mine: _Admissions, until: float, asks: int) -> int | None:
        """Write this replica's exact sum over `state` with its lease returned and `asks` set (one more: an ask;
        the same: an answer); the `asks` written, or None if another write came first."""
        self._leases.pop(group, None)
        update = state.copy()
        update.asks = asks
        with self._index_lock:
            self._set_mine(update, mine.held())
        return asks if self.write(update, until) is not None else None

    def _fits_without(
        self, group: str, update: LedgerState, request: Ask, now: float, used: Mapping[str, int],
        unsettled: Mapping[str, int], mine: _Admissions, changes: Mapping[str, _Mine],
    ) -> bool:
        """Whether a denied request would be allowed without what other replicas may not need (`_unsettled`)."""
        without = dict(used)
        add_usage(without, unsettled, -1)
        decision, _ = self._evaluate(group, update, replace(request, dry_run=True), now, without, mine,
                                     dict(changes))
        return decision.allowed

    def _set_mine(
        self, update: LedgerState, held: Held | None, lease: Mapping[str, int] | None = None, now: float = 0.0
    ) -> None:
        """Put this replica's sum (`_Admissions.held`) and its new lease (or none) into `update`; clear the last
        fold's list (every replica saw that version). What the lease before handed out is in the sum. A lease
        entry outlives the admissions it may hand out by its window (`_within_lease`). The entry is exact as of
        the version written over, so it records that version's `asks` as answered."""
        self._put_sum(update, held)
        if lease:
            expires = now + self._ttl + self.tuning.lease_window
            update.reservations[self._lease_name] = Held(dict(lease), 0, expires, update.asks)
        else:
            update.reservations.pop(self._lease_name, None)
        update.folded = []

    def _put_sum(self, update: LedgerState, held: Held | None) -> None:
        """This replica's entry in `update` becomes `held` (None: none). It is exact as of the version written
        over, so it answers every ask that version holds."""
        if held is None:
            update.reservations.pop(self.replica, None)
        else:
            held.answered = update.asks
            update.reservations[self.replica] = held

    def _asked(self) -> set[str]:
        """The cached groups where another replica asked (`_ask`) since this one last wrote its entry or lease."""
        return {group for group, state in list(self._cache.items()) if self._asked_of(state)}

    def _asked_of(self, state: LedgerState) -> bool:
        return bool(state.asks) and any(held is not None and held.answered < state.asks for held in (
            state.reservations.get(self.replica), state.reservations.get(self._lease_name)))


__all__ = ["Asking"]
