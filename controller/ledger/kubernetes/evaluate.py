"""One request decided against one version of a group's ledger, and a decided batch recorded.

Invariant: a request is checked against observed usage, every other
replica's unexpired entries (leases included) and this replica's own
admissions with the batch's changes, without the part a replacement of the
same object supersedes; only the positive part of a delta is reserved, and
an admission joins the book only once its write (or lease) holds it; one
that grows its group's draw on its parent is recorded only once the batch
registered that draw with the ancestors (`registering`), never within a lease;
a pool's request that adds usage is decided only from an object whose count
of its children's draws is under this replica's terms (`Registering._behind`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from quotalang.controller.ledger.arithmetic import add_usage, maximum
from quotalang.controller.ledger.base import EMPTY, Ask, refuse_drawing
from quotalang.controller.ledger.bodies import pack
from quotalang.controller.ledger.crd import LedgerState, identity_key
from quotalang.controller.ledger.kubernetes.book import _Admissions, _Mine, _past_deadline, _replaces
from quotalang.controller.ledger.kubernetes.core import _Pending, _Written
from quotalang.controller.ledger.kubernetes.drawing import growth
from quotalang.controller.ledger.kubernetes.registering import (
    Draws,
    Registering,
    behind_decision,
    behind_warned,
    refused_decision,
)
from quotalang.decision import Decision


@dataclass(slots=True)
class _View:
    """The usage source one evaluation sees: one group's state at one version."""

    group: str
    used_now: Mapping[str, int]
    cash: Mapping[str, int]

    def used(self, group: str) -> Mapping[str, int]:
        return self.used_now if group == self.group else EMPTY

    def cash_used(self, group: str) -> Mapping[str, int]:
        return self.cash if group == self.group else EMPTY


class Evaluating(Registering):
    """One request decided against one version of a group's ledger, and a decided batch recorded."""

    def _evaluate(
        self,
        group: str,
        update: LedgerState,
        request: Ask,
        now: float,
        used: dict[str, int],
        mine: _Admissions,
        changes: dict[str, _Mine],
        accept: Callable[[Decision], bool] | None = None,
        draws: Draws | None = None,
    ) -> tuple[Decision, _Written | None]:
        """Decide one request against `used` (observed + others' sums + this replica's admissions and the
        batch's `changes`); when it reserves (and `accept` takes it), record it in `changes` and `used`.

        One that grows its group's draw on its parent (`drawing.growth` > 0) is recorded only with `draws`
        (what the batch must register first, `registering`); without, it is not taken here."""
        key = request.identity
        slot = identity_key(key)
        admitted_rv = request.admitted_version
        op = request.operation
        view: Mapping[str, int] = used
        existing = mine.get(slot, changes)
        if existing is not None and _replaces(existing, op, admitted_rv):  # checked without the superseded delta
            view = dict(used)
            add_usage(view, existing.latest(), -1)
        decision = request.decision(_View(group, dict(view), update.cash))
        if decision.allowed and any(v > 0 for v in decision.delta.values()) and (
                why := self._behind_now(update)) is not None:  # it counts the children's draws: fail closed
            decision = behind_decision(decision, why) if decision.mode == "enforce" else behind_warned(decision)
        terms = self._terms(group)
        if decision.touches and terms is None:  # no policy to register its draw under (issue 29)
            decision = refuse_drawing(decision)
        charge = decision.reservation.get(group)
        if not charge or decision.stored is None or (accept is not None and not accept(decision)):
            return decision, None
        need = growth(terms, used, charge) if terms is not None else None
        if need:  # counted only once registered with the ancestors it draws on (`registering`)
            if draws is None:
                return decision, None
            if slot in draws.refused:
                return refused_decision(decision, draws.refused[slot]), None
            add_usage(draws.need.setdefault(slot, {}), need)
            if decision.mode != "enforce":
                draws.force.add(slot)
        body = pack(decision.stored)  # before anything is written
        existing = mine.get(slot, changes)
        usage, rv, base = dict(charge), admitted_rv, {}
        if existing is not None:
            if not _replaces(existing, op, admitted_rv):  # on top of what earlier versions' admissions hold
                base = dict(existing.usage)
                rv = admitted_rv or existing.resource_version
            else:  # only one of the two persists, not always the later: the larger delta, on the same base
                base = dict(existing.base)
                usage = maximum(usage, existing.latest())
            add_usage(used, existing.usage, -1)
        add_usage(usage, base)
        add_usage(used, usage)
        changes[slot] = _Mine(usage, now + self._ttl, rv, base)
        self._prune_pending(now)
        return decision, (key, body, rv)

    def _keep(
        self, mine: _Admissions, changes: Mapping[str, _Mine], written: list[_Written], now: float
    ) -> None:
        """Record decided admissions: their usage in this replica's admissions, their bodies for lookups."""
        self.stats.reserved += len(written)
        with self._index_lock:
            for slot, item in changes.items():
                mine.put(slot, item)
            for key, body, version in written:
                self._pending.pop(key, None)  # to the end: the dict stays in deadline order
                self._pending[key] = _Pending(now + self._ttl, body, version)

    def _prune_pending(self, now: float) -> None:
        """Drop expired bodies from the front: entries go in at the end with the latest deadline, so this
        stops at the first live one instead of scanning thousands on every admission."""
        if len(self._pending) > self.tuning.prune_after:
            with self._index_lock:
                for key in _past_deadline(self._pending, now):
                    del self._pending[key]

    def _others(self, state: LedgerState, now: float) -> dict[str, int]:
        """Observed usage plus every other replica's unexpired entries (their leases and the draws registered
        here included) and what the leader publishes its children draw here (`drawn`)."""
        others: dict[str, int] = dict(state.observed)
        for usage in state.drawn.values():
            add_usage(others, usage)
        for name, held in state.reservations.items():
            if name not in (self.replica, self._lease_name) and held.expires > now:
                add_usage(others, held.usage)
        return others


__all__ = ["Evaluating"]
