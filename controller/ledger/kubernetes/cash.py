"""Cash: accrual by compare-and-swap from what is stored.

Invariant: no interval is accrued twice (the accrual runs on the stored
state, again after a conflict) and the last accrual time only moves forward.
"""

from __future__ import annotations

from collections.abc import Callable

from quotalang.controller.ledger.accrual import accrue_into
from quotalang.controller.ledger.base import CashState
from quotalang.controller.ledger.crd import LedgerState
from quotalang.controller.ledger.kubernetes.tidy import Tidying


class Cash(Tidying):
    """Cash: accrual by compare-and-swap from what is stored."""

    def update_cash(self, group: str, accrue: Callable[[CashState], CashState | None]) -> CashState:
        """Accrue cash by CAS from what is *stored*, so no interval is ever accrued twice.

        `accrue` gets the stored cash, period start and last accrual time and
        returns the new ones (None: nothing to do). It may run more than once
        (after a conflict, with the newer state). The last accrual time only
        moves forward: a result that would move it back is refused.
        """
        result: list[CashState] = []

        def change(state: LedgerState) -> bool:
            now, changed = accrue_into(group, state, accrue)
            result[:] = [now]
            return changed

        self.mutate(group, change)
        return result[0]

    def cash_state(self, group: str) -> CashState:
        state = self._cache.get(group) or self.read(group, self._monotonic() + self.tuning.controller_timeout)
        return CashState(dict(state.cash), state.period_start, state.last_accrual)


__all__ = ["Cash"]
