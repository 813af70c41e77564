"""Cash accrual: pure functions from pods and a clock to nano-unit-seconds spent.

DESIGN ("Cash"): the controller accrues `amount × seconds` for every pod of a
group that holds a budgeted key, from the later of (the pod was scheduled, the
last accrual) to the earlier of (now, the pod finished). Windows reset on
period boundaries (UTC; weeks start Monday); a budget with no period is a
lifetime budget and never resets.

Nothing here reads a clock or does I/O: the caller passes `now` and the time it
observed a pod, so accrual is replayable and testable to the nano-second.

Arithmetic is exact: times become integer milliseconds (`round(t * 1000)`) and
each key adds `Σ nanos × overlap_ms // 1000` once per accrual, so accruing
[a, b] then [b, c] equals accruing [a, c] whenever the pods' usages are whole
micro-units (the floor can lose at most one nano-unit-second per key and
accrual otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from quotalang.compiler import CashBudget, CompiledPolicy
from quotalang.controller.kube.times import parse_time
from quotalang.controller.ledger.base import CashState, ObjectKey
from quotalang.usage import per_pod, usage_key, workload_models

_TERMINAL = ("Succeeded", "Failed")
_STATUS_LISTS = ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
# Fields that make `pod_usage` charge a pod as gone; a pod is charged for what it held while it ran.
_DELETION_FIELDS = ("deletionTimestamp", "deletionGracePeriodSeconds")


@dataclass(frozen=True, slots=True)
class PodRun:
    """One pod's stay on a node, as far as cash is concerned."""

    uid: str
    group: str
    usage: Mapping[str, int]  # key -> nanos the pod holds (model keys included)
    start: float  # when it was scheduled (epoch s)
    end: float | None  # when it finished or was deleted; None while it runs
    workload: ObjectKey | None = None  # the workload that pays for it (its charged owner, or the pod itself)


def period_start(period: str | None, t: float) -> float | None:
    """The start (UTC epoch s) of the `period` window holding `t`; None for lifetime budgets.

    day: 00:00 UTC; week: Monday 00:00 UTC; month: the 1st, 00:00 UTC.
    """
    if period is None:
        return None
    moment = datetime.fromtimestamp(t, UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start = midnight
    elif period == "week":
        start = midnight - timedelta(days=midnight.weekday())  # Monday is 0
    elif period == "month":
        start = midnight.replace(day=1)
    else:
        raise ValueError(f"unknown cash period {period!r} (expected day, week, month or none)")
    return start.timestamp()


def period_end(period: str | None, t: float) -> float:
    """When the `period` window holding `t` ends and its budget renews (UTC epoch s); +inf for lifetime.

    What an alert needs to tell a budget that will run out from one that renews first.
    """
    start = period_start(period, t)
    if start is None:
        return math.inf
    begun = datetime.fromtimestamp(start, UTC)
    if period == "day":
        end = begun + timedelta(days=1)
    elif period == "week":
        end = begun + timedelta(days=7)
    else:  # month: period_start refused anything else
        end = begun.replace(year=begun.year + 1, month=1) if begun.month == 12 else begun.replace(month=begun.month + 1)
    return end.timestamp()


def _mapping(node: Any) -> Mapping[str, Any]:
    return node if isinstance(node, Mapping) else {}


def _list(node: Any) -> list[Any]:
    return node if isinstance(node, list) else []


def _parse_time(text: Any) -> float | None:
    """An RFC 3339 timestamp (`2026-11-23T09:00:00Z`) as epoch seconds; None when unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def scheduled_at(pod: Mapping[str, Any]) -> float | None:
    """When the pod was bound to a node: its `PodScheduled=True` condition's lastTransitionTime.

    None unless `spec.nodeName` is set and that condition (with a readable time) is there.
    """
    node = _mapping(pod.get("spec")).get("nodeName")
    if not isinstance(node, str) or not node:
        return None
    for condition in _list(_mapping(pod.get("status")).get("conditions")):
        condition = _mapping(condition)
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            return _parse_time(condition.get("lastTransitionTime"))
    return None


def finished_at(pod: Mapping[str, Any], observed_at: float) -> float | None:
    """When a terminal pod stopped holding its resources; None while it runs.

    For `Succeeded`/`Failed` pods: the latest `state.terminated.finishedAt` over
    app, init and ephemeral containers, else `observed_at` (the first time the
    caller saw it terminal).
    """
    status = _mapping(pod.get("status"))
    if status.get("phase") not in _TERMINAL:
        return None
    latest: float | None = None
    for field in _STATUS_LISTS:
        for container in _list(status.get(field)):
            terminated = _mapping(_mapping(_mapping(container).get("state")).get("terminated"))
            when = _parse_time(terminated.get("finishedAt"))
            if when is not None and (latest is None or when > latest):
                latest = when
    return observed_at if latest is None else latest


def _as_running(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod without status and deletion marks: what it charges while it runs."""
    running = {k: v for k, v in pod.items() if k != "status"}
    meta = pod.get("metadata")
    if isinstance(meta, Mapping):
        running["metadata"] = {k: v for k, v in meta.items() if k not in _DELETION_FIELDS}
    return running


def _uid(pod: Mapping[str, Any]) -> str:
    meta = _mapping(pod.get("metadata"))
    uid = meta.get("uid")
    if isinstance(uid, str) and uid:
        return uid
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def pod_run(policy: CompiledPolicy, pod: Mapping[str, Any], group: str, observed_at: float) -> PodRun | None:
    """The run of `pod` in `group` for cash; None when it is not scheduled or holds no budgeted key.

    Usage is the pod's own spec as if it were running (a terminal pod still
    held its resources until it finished), with model keys from the pod's
    labels, restricted to the keys `group`'s cash budgets name. Raises
    `quotalang.InputError` for a pod whose resources cannot be read.
    """
    compiled = policy.groups.get(group)
    if compiled is None or not compiled.cash:
        return None
    start = scheduled_at(pod)
    if start is None:
        return None
    running = _as_running(pod)
    models = workload_models(policy, running, running)
    vector = per_pod(policy, running, models, usage_key(running))
    usage = {key: nanos for key, nanos in vector if key in compiled.cash and nanos > 0}
    if not usage:
        return None
    return PodRun(_uid(pod), group, usage, start, finished_at(pod, observed_at))


def _ms(t: float) -> int:
    return round(t * 1000)


def accrue(
    state: CashState,
    runs: Iterable[PodRun],
    budgets: Mapping[str, CashBudget],
    now: float,
) -> CashState | None:
    """Cash after accruing `runs` (one group's pods) up to `now`; None when `now` is not past the last accrual.

    Per budget key: the stored amount carries over only when the last accrual
    lies in the window holding `now` (always, for lifetime budgets); otherwise
    it restarts at 0. Each run adds `usage[key] × seconds` of its overlap with
    [max(window start, last accrual), now]. Keys no longer budgeted are dropped,
    and so are zero amounts (the ledger stores none).
    """
    t0, t1 = state.last_accrual, now
    if t0 is not None and t1 <= t0:
        return None
    runs = tuple(runs)
    used: dict[str, int] = {}
    earliest: float | None = None
    for key, budget in budgets.items():
        ps = period_start(budget.period, t1)
        if ps is not None and (earliest is None or ps < earliest):
            earliest = ps
        carried = state.used.get(key, 0) if t0 is not None and (ps is None or ps <= t0) else 0
        lo_ms = _lower_ms(ps, t0)
        total = sum(_held(run, key, lo_ms, t1) for run in runs)  # nanos × milliseconds
        amount = carried + total // 1000
        if amount:
            used[key] = amount
    return CashState(used, earliest, t1)


def _lower_ms(window: float | None, last_accrual: float | None) -> int | None:
    """Where an accrual up to now starts: the later of the window's start and the last accrual (ms)."""
    bounds = [t for t in (window, last_accrual) if t is not None]
    return _ms(max(bounds)) if bounds else None


def _held(run: PodRun, key: str, lo_ms: int | None, now: float) -> int:
    """nanos × milliseconds `run` held `key` from `lo_ms` (None: its start) to `now` or its end."""
    nanos = run.usage.get(key, 0)
    if nanos <= 0:
        return 0
    begin = _ms(run.start) if lo_ms is None else max(_ms(run.start), lo_ms)
    end = _ms(now) if run.end is None else min(_ms(run.end), _ms(now))
    return nanos * (end - begin) if end > begin else 0


def spent_by_run(
    state: CashState, runs: Iterable[PodRun], budgets: Mapping[str, CashBudget], now: float
) -> list[tuple[PodRun, str, int]]:
    """What each run adds to each budgeted key in `accrue(state, runs, budgets, now)`: (run, key, nano-unit-s).

    The same windows as `accrue`; each run's share is floored on its own, so
    the shares may sum to up to one nano-unit-second per run less than the
    group's amount.
    """
    t0 = state.last_accrual
    if t0 is not None and now <= t0:
        return []
    out: list[tuple[PodRun, str, int]] = []
    for key, budget in budgets.items():
        lo_ms = _lower_ms(period_start(budget.period, now), t0)
        for run in runs:
            amount = _held(run, key, lo_ms, now) // 1000
            if amount:
                out.append((run, key, amount))
    return out


__all__ = ["PodRun", "accrue", "finished_at", "period_end", "period_start", "pod_run", "scheduled_at", "spent_by_run"]
