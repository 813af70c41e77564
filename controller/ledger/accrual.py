"""Cash as a store records it: an accrual applied to one group's record, the same in every store.

The accrual itself (`controller.cash`) computes a group's new cash from the
stored one; a store applies it under whatever makes its read-modify-write
atomic (a group's lock, a compare-and-swap). Invariant: the last accrual time
never moves back (`CashError`), so a replayed or stale accrual cannot count
the same seconds twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from quotalang.controller.ledger.base import CashError, CashState


class CashFields(Protocol):
    """A store's record of one group's cash (its in-memory group, a ledger object's state)."""

    cash: dict[str, int]
    period_start: float | None
    last_accrual: float | None


def accrued(group: str, stored: CashState, accrue: Callable[[CashState], CashState | None]) -> CashState | None:
    """Run an accrual on a copy of the stored cash; refuse one that would move the last accrual back."""
    new = accrue(CashState(dict(stored.used), stored.period_start, stored.last_accrual))
    if new is not None and stored.last_accrual is not None and (
        new.last_accrual is None or new.last_accrual < stored.last_accrual
    ):
        raise CashError(f"cash of group {group}: the last accrual time cannot move back")
    return new


def accrue_into(
    group: str, record: CashFields, accrue: Callable[[CashState], CashState | None]
) -> tuple[CashState, bool]:
    """`update_cash` for every store: apply an accrual to a group's record in place.

    Returns the cash now stored and whether the record changed (the caller
    holds whatever makes the read-modify-write atomic: a lock, a CAS).
    """
    stored = CashState(dict(record.cash), record.period_start, record.last_accrual)
    new = accrued(group, stored, accrue)
    if new is None:
        return stored, False
    record.cash = {k: v for k, v in new.used.items() if v}
    record.period_start, record.last_accrual = new.period_start, new.last_accrual
    return new, True


__all__ = ["CashFields", "accrue_into", "accrued"]
