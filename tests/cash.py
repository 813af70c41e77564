"""Setting cash by hand in tests, through the one path stores offer for it (`update_cash`)."""

from __future__ import annotations

from collections.abc import Mapping

from quotalang.controller.ledger.base import CashState, CashStore


def set_cash(store: CashStore, group: str, spent: Mapping[str, int]) -> None:
    """Cash spent this period per key, in nano-unit-seconds (what the controller accrues)."""
    store.update_cash(group, lambda state: CashState(dict(spent), state.period_start, state.last_accrual))


def add_cash(store: CashStore, group: str, key: str, nanos: int) -> None:
    def add(state: CashState) -> CashState:
        used = dict(state.used)
        used[key] = used.get(key, 0) + nanos
        return CashState(used, state.period_start, state.last_accrual)

    store.update_cash(group, add)
