"""What each workload spent this period (`controller.spending`, fed by the accrual): hand-computed cpu-hours.

The reconcile tests' policy and objects: group `b` may spend 100 cpu-hours a week (weeks start Monday);
a pod asks for 4 cpu.
"""

from __future__ import annotations

from quotalang.compiler import CompiledPolicy
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.controller.reconcile import PODS, Reconciler
from tests.controller.test_reconcile import (
    DEPLOYMENTS,
    HOUR,
    MONDAY,
    NANO,
    REPLICASETS,
    TEMPLATE,
    Clock,
    cash,
    deployment,
    ledger,
    owned,
    pod,
    policy,
)

__all__ = ["ledger", "policy"]  # the reconcile tests' fixtures

CPU_HOUR = NANO * HOUR  # one cpu for an hour, in nano-cpu-seconds
WEB = ObjectKey("apps", "Deployment", "ns", "web")


def _web(reconciler: Reconciler) -> None:
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", "b"))
    reconciler.apply(REPLICASETS, "ADDED", owned("ReplicaSet", "web-1", "Deployment", "web",
                                                 spec={"replicas": 2, "template": TEMPLATE}))


def test_a_deployments_pods_spending_adds_up_to_the_deployment(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    clock = Clock(MONDAY + 2 * HOUR)
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    _web(reconciler)
    reconciler.apply(PODS, "ADDED", pod("web-1-x", group=None, owner=("ReplicaSet", "web-1")))  # from 00:00
    reconciler.apply(PODS, "ADDED", pod("web-1-y", group=None, owner=("ReplicaSet", "web-1"),
                                        scheduled="2025-11-24T01:00:00Z", cpu="500m"))
    reconciler.apply(PODS, "ADDED", pod("solo", group="b", scheduled="2025-11-24T01:30:00Z"))  # a bare pod
    reconciler.accrue()
    budgets = policy.groups["b"].cash
    # web: x 4 cpu × 2 h + y 0.5 cpu × 1 h = 8.5 cpu-hours; solo: 4 cpu × 0.5 h = 2 cpu-hours
    solo = ObjectKey("", "Pod", "ns", "solo")
    assert reconciler.spending.of("b", budgets, clock.now) == {
        WEB: {"requests.cpu": 8 * CPU_HOUR + CPU_HOUR // 2}, solo: {"requests.cpu": 2 * CPU_HOUR}}
    assert cash(ledger, "b") == 10 * CPU_HOUR + CPU_HOUR // 2  # the group's total: the same cash, once
    clock.now += HOUR
    reconciler.accrue()  # one more hour: web + 4.5, solo + 4, never the first ones again
    assert reconciler.spending.of("b", budgets, clock.now) == {
        WEB: {"requests.cpu": 13 * CPU_HOUR}, solo: {"requests.cpu": 6 * CPU_HOUR}}
    assert cash(ledger, "b") == 19 * CPU_HOUR


def test_a_new_week_starts_from_nothing(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    clock = Clock(MONDAY + 7 * 24 * HOUR - HOUR)  # Sunday 23:00
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    _web(reconciler)
    reconciler.apply(PODS, "ADDED", pod("web-1-x", group=None, owner=("ReplicaSet", "web-1"),
                                        scheduled="2025-11-30T22:00:00Z"))
    reconciler.accrue()
    budgets = policy.groups["b"].cash
    assert reconciler.spending.of("b", budgets, clock.now) == {WEB: {"requests.cpu": 4 * CPU_HOUR}}
    clock.now += 2 * HOUR  # Monday 01:00: last week's 8 cpu-hours are not this week's
    assert reconciler.spending.of("b", budgets, clock.now) == {}
    reconciler.accrue()
    assert reconciler.spending.of("b", budgets, clock.now) == {WEB: {"requests.cpu": 4 * CPU_HOUR}}
