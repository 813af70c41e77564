"""Who borrows, as the in-process store records it (issue 29): an admission's draws, until the object goes.

A lender's request may be admitted counting some borrowers' room as coming
back (`Decision.reclaims`); the controller then suspends or deletes them
(`controller.reclaim`) and settles the record. Invariant: every change is
journalled before it shows; a borrower named for reclaim stays so (a lender
was admitted counting it gone) until it is settled or its observation
charges nothing of what it drew, so one borrower's room is never given
twice. The store's index lock guards the book: every method expects the
caller to hold it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from quotalang.controller.ledger.base import ObjectKey, Observation
from quotalang.controller.ledger.inprocess import Journal
from quotalang.decision import Decision
from quotalang.reclaimable import Borrower

Row = tuple[ObjectKey, Borrower | None]  # None: no longer borrows


class BorrowerBook:
    """The borrower records of one in-process store, by object (guarded by the store's index lock)."""

    def __init__(self, journal: Journal | None) -> None:
        self._journal = journal
        self._records: dict[ObjectKey, Borrower] = {}

    def load(self, records: dict[ObjectKey, Borrower], alive: Callable[[ObjectKey], bool]) -> None:
        """The journal's records; one whose object is gone (written by a binary that kept none) is dropped,
        never reclaimed."""
        self._records = {k: b for k, b in records.items() if alive(k)}

    def all(self) -> tuple[Borrower, ...]:
        """Every admission recorded as borrowing (a copy)."""
        return tuple(self._records.values())

    def settle(self, identity: ObjectKey, done: bool) -> None:
        """A reclaim carried out (`done`: the record goes) or given up on (unmarked: it counts again)."""
        found = self._records.get(identity)
        if found is not None:
            self._write([(identity, None if done else replace(found, reclaiming=False))])

    def taken(self, decision: Decision) -> bool:
        """Whether a borrower the decision reclaims went meanwhile or is already being reclaimed by another."""
        return any(not isinstance(b.ref, ObjectKey) or (found := self._records.get(b.ref)) is None
                   or found.reclaiming for b in decision.reclaims)

    def note(self, key: ObjectKey, decision: Decision, now: float) -> None:
        """Record who borrows: the admission's draws and how it is given back; and mark the borrowers it
        reclaims. An UPDATE in the same group that borrows nothing more keeps the record (its usage now the
        object's); a move to another group ends it."""
        rows: list[Row] = []
        known = self._records.get(key)
        if decision.borrowed and decision.reclaim is not None and decision.group is not None:
            stays = known is not None and known.group == decision.group
            draws = (*known.draws, *decision.borrowed) if known is not None and stays else decision.borrowed
            admitted = known.admitted if known is not None and stays else now
            # one already named for reclaim stays so: a lender was admitted counting it gone
            reclaiming = known.reclaiming if known is not None and stays else False
            rows.append((key, Borrower(key, f"{key.namespace}/{key.name}".lstrip("/"), decision.group, draws,
                                       dict(decision.total), decision.reclaim, admitted, reclaiming)))
        elif known is not None:
            same = decision.group == known.group
            rows.append((key, replace(known, usage=dict(decision.total)) if same else None))
        for borrower in decision.reclaims:
            ref = borrower.ref
            found = self._records.get(ref) if isinstance(ref, ObjectKey) else None
            if found is not None and isinstance(ref, ObjectKey):
                rows.append((ref, replace(found, reclaiming=True)))
        self._write(rows)

    def released(self, seen: Sequence[Observation]) -> None:
        """A borrower being reclaimed whose observation charges nothing of what it drew (suspended) has given
        its room back: its record goes. Until then it counts as gone."""
        self._write([(o.identity, None) for o in seen if (record := self._records.get(o.identity)) is not None
                     and record.reclaiming and not any(o.usage.get(d.key, 0) > 0 for d in record.draws)])

    def drop(self, key: ObjectKey) -> None:
        """The object is gone; the journal's `forgotten` has removed its row already."""
        self._records.pop(key, None)

    def keep(self, alive: Callable[[ObjectKey], bool]) -> None:
        """After a resync, only the records whose object is still there (the journal's `resynced` removed the
        others' rows)."""
        self._records = {k: b for k, b in self._records.items() if alive(k)}

    def _write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        if self._journal is not None:
            self._journal.borrowers(rows)
        for key, record in rows:
            if record is None:
                self._records.pop(key, None)
            else:
                self._records[key] = record


__all__ = ["BorrowerBook"]
