"""What each workload spent of its group's cash budgets this period: "which job burnt our GPU-hours?".

The ledger keeps cash per group only (that is what admission checks). The
accrual that adds a group's cash also knows each pod's share (`cash.spent_by_run`)
and the workload that pays for the pod (its charged owner, or itself), so it
adds the shares here: per group, workload and key, with the start of the
period they belong to; a share of a newer period replaces an older one.

In memory, in the process that accrues (the controller; with the kubernetes
store the Lease holder): a restart, or a new leader, starts counting again
from its first accrual, while the group's total in the ledger loses nothing.
That is the decision written down: a durable per-workload record would be a
write per workload per accrual, for a breakdown the group's total bounds.
Bounded by the workloads that ran this period; a period's end drops the rest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from quotalang.compiler import CashBudget
from quotalang.controller.cash import PodRun, period_start
from quotalang.controller.ledger.base import ObjectKey


class Spending:
    """Per group: workload → key → (the period's start, nano-unit-seconds spent in it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, dict[ObjectKey, dict[str, tuple[float | None, int]]]] = {}

    def add(self, group: str, shares: Iterable[tuple[PodRun, str, int]], budgets: Mapping[str, CashBudget],
            now: float) -> None:
        """Add one accrual's shares (`cash.spent_by_run`) of `group`, whose budgets are `budgets`, up to `now`."""
        starts = {key: period_start(budget.period, now) for key, budget in budgets.items()}
        with self._lock:
            table = self._groups.setdefault(group, {})
            for workload, keys in list(table.items()):  # a period's end drops what was spent in the last one
                kept = {k: v for k, v in keys.items() if k in starts and v[0] == starts[k]}
                if kept:
                    table[workload] = kept
                else:
                    del table[workload]
            for run, key, amount in shares:
                if run.workload is None or key not in starts:
                    continue
                keys = table.setdefault(run.workload, {})
                start, spent = keys.get(key, (starts[key], 0))
                keys[key] = (starts[key], spent + amount if start == starts[key] else amount)

    def of(self, group: str, budgets: Mapping[str, CashBudget], now: float) -> dict[ObjectKey, dict[str, int]]:
        """What each workload of `group` spent this period, per budgeted key (a copy)."""
        starts = {key: period_start(budget.period, now) for key, budget in budgets.items()}
        with self._lock:
            table = self._groups.get(group, {})
            out = {w: {k: v for k, (start, v) in keys.items() if k in starts and start == starts[k]}
                   for w, keys in table.items()}
        return {w: keys for w, keys in out.items() if keys}


__all__ = ["Spending"]
