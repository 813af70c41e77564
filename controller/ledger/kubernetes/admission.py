"""Admission: a group's concurrent asks decided as one batch against one version and written with one CAS.

Invariant: N concurrent requests that fit k admit exactly k, across replicas
as within one: every admission that reserves is proven by a compare-and-swap
of the one object holding everything it was checked against (or taken from a
lease so reserved); a decision that writes nothing (a denial, a dry run) is
made only from a fresh GET, never from the cache alone.
"""

from __future__ import annotations

import math

from quotalang.controller.kube.deadline import budget
from quotalang.controller.ledger.arithmetic import add_usage
from quotalang.controller.ledger.base import Ask, LedgerUnavailable
from quotalang.controller.ledger.crd import identity_key
from quotalang.controller.ledger.group_commit import GroupCommit, Slot
from quotalang.controller.ledger.kubernetes.book import _Mine
from quotalang.controller.ledger.kubernetes.core import _Lease, _Written
from quotalang.controller.ledger.kubernetes.leases import Leasing
from quotalang.controller.ledger.kubernetes.registering import Draws, with_overdraws
from quotalang.decision import Decision


class Admitting(Leasing):
    """Admission: a group's concurrent asks decided as one batch against one version and written with one CAS."""

    def reserve(self, ask: Ask) -> Decision:
        """Decide `ask` and, when the decision `reserves`, reserve in its group's ledger object.

        Concurrent asks of one group share one compare-and-swap (`_decide`);
        what is reserved comes from the decision alone. Gives up with
        `LedgerUnavailable` at the ask's deadline.
        """
        group = ask.group
        if group is None:  # unlabelled or unknown: checked against no group, nothing to reserve
            return ask.decision(self)
        until = ask.deadline if ask.deadline != math.inf else self._monotonic() + budget(self.tuning.admission_timeout)

        def busy() -> LedgerUnavailable:
            self.stats.unavailable += 1
            return LedgerUnavailable(f"the ledger of group {group} is busy: gave up at the request deadline")

        decision = self._commit(group).submit(ask, until, busy)
        assert isinstance(decision, Decision)
        return decision

    def try_reserve(self, ask: Ask) -> Decision | None:
        """`reserve` if that needs no call and no wait (within this replica's lease), else None, having done
        nothing: the event loop tries this first."""
        if ask.group is None:
            return ask.decision(self)
        return self._admit_now(ask.group, Slot(ask, ask.deadline))

    def _commit(self, group: str) -> GroupCommit[Ask]:
        commit = self._commits.get(group)
        if commit is None:
            commit = self._commits.setdefault(group, GroupCommit(lambda batch: self._decide(group, batch)))
        return commit

    def _admit_now(self, group: str, slot: Slot[Ask]) -> Decision | None:
        """The request decided within this replica's lease at once, or None if that would need a call or a
        wait: a batch in flight or queued (it goes first), no lease, a charge the lease cannot cover, a denial
        (made only from a fresh read), a dry run."""
        if not self._commit(group).idle():
            return None
        writer = self._writer(group)
        if not writer.take_if_free():
            return None
        try:
            if self._within_lease(group, [slot]):
                return None
            self._count(group, 1)
        finally:
            writer.__exit__()
        assert isinstance(slot.result, Decision)
        return slot.result

    def _decide(self, group: str, batch: list[Slot[Ask]]) -> None:
        """Decide a batch in arrival order against one version of the ledger; write it with one CAS.

        The write sets this replica's entry to the sum of its unconfirmed
        admissions, the batch's included; they join `_mine` only once the
        write succeeded (until then they are the batch's `changes`).
        """
        with self._writer(group):
            self._count(group, len(batch))
            rest = self._within_lease(group, batch)
            if rest:
                self._decide_batch(group, rest)

    def _decide_batch(self, group: str, batch: list[Slot[Ask]]) -> None:
        until = min(slot.until for slot in batch)
        moment = self._monotonic()  # wait at most half of what is left: the last read and write need time too
        wait_for_others = moment + min(self.tuning.answer_wait, (until - moment) / 2)
        asked: int | None = None
        tokens: dict[str, str] = {}  # identity slot -> its registration token, for every round of this batch
        refused: dict[str, str] = {}  # identity slot -> why a pool refused its draw (`registering`)
        state, fresh = self._cache.get(group), False
        if state is None:
            state, fresh = self.read(group, until), True
        while True:
            now = self._clock()
            update = state.copy()
            with self._index_lock:
                mine, used = self._admissions(group, now)
            add_usage(used, self._others(update, now))
            unsettled = self._unsettled(update, now, asked)
            decisions: list[Decision] = []
            written: list[_Written] = []
            changes: dict[str, _Mine] = {}
            stale = blocked = False
            lease: dict[str, int] | None = None
            draws = Draws(refused=refused)
            for slot in batch:
                decision, reserved = self._evaluate(group, update, slot.item, now, used, mine, changes,
                                                    draws=draws)
                decisions.append(decision)
                if reserved is not None:
                    written.append(reserved)
                elif not fresh and not (decision.allowed and not any(v > 0 for v in decision.delta.values())):
                    stale = True  # never deny (or dry-run) from the cache alone: it may not have seen a release
                elif fresh and unsettled and not decision.allowed and self._fits_without(
                        group, update, slot.item, now, used, unsettled, mine, changes):
                    blocked = True  # only what others may not need keeps it out: ask them
            if stale:
                state, fresh = self.read(group, until), True
                continue
            if blocked and self._monotonic() < wait_for_others:
                if asked is None or self._lent_since(update, asked):  # a refused ask is made again, too
                    asked = self._ask(group, state, mine, until)
                elif self._asked_of(update):  # another waiter asked since: answer here (tidy waits for this turn)
                    self._write_own(group, state, mine, until, state.asks)
                self._sleep(self.tuning.ask_poll)
                state, fresh = self.read(group, until), True
                continue
            if draws.need and not self._register_batch(group, draws, tokens, until):
                continue  # decided again from the same version, the refused one denied
            decisions = [self._dry_drawn(group, slot.item, d, used, until) for slot, d in zip(batch, decisions,
                                                                                               strict=True)]
            if written:
                last, decision = next((slot.item, d) for slot, d in zip(reversed(batch), reversed(decisions),
                                                                        strict=True) if d.reservation.get(group))
                lease = self._lease_for(group, update, last, decision, used)
                with self._index_lock:
                    held = mine.held(changes)
                self._set_mine(update, held, lease, now)
                if self.write(update, until) is None:
                    if self._monotonic() >= until:
                        self.stats.unavailable += 1
                        raise LedgerUnavailable(
                            f"the ledger of group {group} kept changing under concurrent writes: "
                            "gave up at the request deadline"
                        )
                    state, fresh = self.read(group, until), True
                    continue
            self._keep(mine, changes, written, now)
            for slot_key, token in tokens.items():
                if slot_key not in draws.need:  # registered in an earlier round, not admitted in the last
                    self._unregister(token, until)
            if written:  # the lease written replaces the one before (what that one handed out is in `mine`)
                if lease:
                    self._leases[group] = _Lease(dict(lease), self._monotonic() + self.tuning.lease_window)
                else:
                    self._leases.pop(group, None)
            for slot, decision in zip(batch, decisions, strict=True):
                slot.result = with_overdraws(decision, draws.over.get(identity_key(slot.item.identity), []))
            return


__all__ = ["Admitting"]
