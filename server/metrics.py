"""Prometheus metrics: counters on the hot path, ledger gauges computed at scrape time.

The hot path adds to two plain Python counters (a dict keyed by the label
tuple, a list of histogram buckets) that a collector turns into Prometheus
families at scrape time: prometheus_client's own Counter and Histogram take a
mutex per update, which at thousands of decisions a second is measurable.
Updates happen on the event loop thread only, so no lock is needed. Ledger and cash gauges are not kept
up to date on every admission: a collector reads the ledger when Prometheus
scrapes, so 1,000 groups × 15 keys cost nothing between scrapes.

Every label value of the admission counters comes from a closed set: kinds
are the policy's kinds (plus `Scale` and `HorizontalPodAutoscaler`, which the
engine handles itself), groups the policy's groups, operations and decisions
their fixed lists; anything else is counted as `other`. A request's kind or
group label is chosen by whoever sends it, and a counter child is never
freed, so raw values let anyone grow /metrics without bound (10,000 requests
with made-up kinds made it 21 MB).

With several clusters (`serve --cluster`), `quotalang_cluster_reachable` and
`quotalang_cluster_synced` say how each member's watches fare, and
`quotalang_ledger_observed` gives each group's observed usage per cluster;
the `cluster` label takes only the registered names.

Where some group lends or borrows a key (issue 29), `quotalang_borrowed`
and `quotalang_lent` give, per group and key, what it borrows beyond its
hard and what of its lendable part others hold (`quotalang.lent`, as the
tree, the pages and `/api/groups` show it). Their labels are the ledger
gauges' (`group`, `resource`, so that they join with `quotalang_ledger_hard`),
bounded the same way: the policy's groups and the keys it lends or borrows.

Quantities are exported in their natural unit (cores, bytes, pods, GPUs) and
cash in unit-seconds (GPU-seconds, core-seconds), as Prometheus prefers base
units; divide by 3600 for GPU-hours.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from quotalang.controller import Ledger
from quotalang.controller.cash import period_end
from quotalang.lent import figures
from quotalang.policy import CompiledPolicy, cash_rows, limit_rows
from quotalang.quantity import approximate
from quotalang.server.outside import Outside

OTHER = "other"  # the label value of everything outside a closed set
ENGINE_KINDS = frozenset({"Scale", "HorizontalPodAutoscaler"})  # kinds the engine decides without a rule
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
VERDICTS = frozenset({"allow", "deny", "warn", "audit", "skip", "error"})
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Metrics:
    """Every metric the server exports, in a registry of its own (one per app)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._admissions = AdmissionCollector()
        r.register(self._admissions)
        self.errors = Counter(
            "quotalang_admission_errors", "Requests the engine could not decide (answered per failure mode).",
            ["kind"], registry=r,
        )
        self.bad_requests = Counter(
            "quotalang_bad_requests", "Bodies that were not usable AdmissionReviews (4xx).", ["reason"],
            registry=r,
        )
        self.outside_quota = Counter(
            "quotalang_outside_quota",
            "Admissions in namespaces no group binds: admitted and charged nowhere (issue 26).", registry=r,
        )
        self.outside = Outside()  # which namespaces those were (GET /api/namespaces)
        self.reloads = Counter("quotalang_policy_reloads", "Policies loaded and swapped in.", registry=r)
        self.reload_errors = Counter(
            "quotalang_policy_reload_errors", "Policies rejected on reload (the last good one kept serving).",
            registry=r,
        )
        self.policy_ok = Gauge(
            "quotalang_policy_last_reload_ok", "1 if the last policy (re)load succeeded, else 0.", registry=r
        )
        self.tls_reloads = Counter("quotalang_tls_reloads", "Serving certificates reloaded.", registry=r)
        self.tls_reload_errors = Counter(
            "quotalang_tls_reload_errors", "Certificate reloads that failed (the old pair kept serving).",
            registry=r,
        )
        self._policy: Callable[[], CompiledPolicy | None] = _no_policy
        self._labelled: CompiledPolicy | None = None  # the policy the label sets below belong to
        self._kinds: frozenset[str] = ENGINE_KINDS
        self._groups: frozenset[str] = frozenset({""})
        self.clusters: tuple[str, ...] = ()  # the registered clusters (serve --cluster); () for one

    def watch_ledger(self, ledger: Ledger, policy: Callable[[], CompiledPolicy | None]) -> None:
        """Export the ledger's numbers for every group of the current policy (and label by it)."""
        self._policy = policy
        self.registry.register(LedgerCollector(ledger, policy, lambda: self.clusters))

    def watch_clusters(self, names: Sequence[str], health: Callable[[], Mapping[str, ClusterReport]]) -> None:
        """Export each registered cluster's health, and the ledger's usage per cluster."""
        self.clusters = tuple(names)
        self.registry.register(ClusterCollector(self.clusters, health))

    def admission(self, kind: str, operation: str, decision: str, group: str, seconds: float) -> None:
        """Count one decision (and an engine error), every label value from its closed set."""
        policy = self._policy()
        if policy is not self._labelled:  # a reload: the label sets follow the new policy
            self._labelled = policy
            if policy is None:
                self._kinds, self._groups = ENGINE_KINDS, frozenset({""})
            else:
                self._kinds = ENGINE_KINDS | {name for _, name in policy.kinds}
                self._groups = frozenset({"", *policy.groups})
        kind = kind if kind in self._kinds else OTHER
        self._admissions.add(
            kind,
            operation if operation in OPERATIONS else OTHER,
            decision if decision in VERDICTS else OTHER,
            group if group in self._groups else OTHER,
            seconds,
        )
        if decision == "error":
            self.errors.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ClusterReport(Protocol):
    """How one cluster's watches fare (the Fleet's `ClusterHealth` is one), for /readyz and the metrics."""

    @property
    def reachable(self) -> bool: ...
    @property
    def synced(self) -> bool: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def since(self) -> float | None: ...


def _no_policy() -> CompiledPolicy | None:
    return None


class AdmissionCollector(Collector):
    """Decisions by kind / operation / decision / group, and their latency histogram."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.seconds = 0.0

    def add(self, kind: str, operation: str, decision: str, group: str, seconds: float) -> None:
        labels = (kind, operation, decision, group)
        counts = self.counts
        counts[labels] = counts.get(labels, 0) + 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.seconds += seconds

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "quotalang_admissions", "Admission decisions.", labels=["kind", "operation", "decision", "group"]
        )
        for labels, count in list(self.counts.items()):
            decisions.add_metric(list(labels), count)
        cumulative, running = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), list(self.buckets), strict=True):
            running += count
            cumulative.append((bound, running))
        latency = HistogramMetricFamily(
            "quotalang_admission_duration_seconds", "Time to decide one AdmissionReview.",
            buckets=cumulative, sum_value=self.seconds,
        )
        yield from (decisions, latency)


class LedgerCollector(Collector):
    """Reads the ledger at scrape time: hard, used, reserved, free per group and key; cash."""

    def __init__(
        self,
        ledger: Ledger,
        policy: Callable[[], CompiledPolicy | None],
        clusters: Callable[[], tuple[str, ...]] = tuple,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._policy = policy
        self._clusters = clusters
        self._clock = clock

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # computed on collect; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        labels = ["group", "resource"]
        hard = GaugeMetricFamily("quotalang_ledger_hard", "Hard limit of a group's key.", labels=labels)
        used = GaugeMetricFamily(
            "quotalang_ledger_used", "A group's own usage (observed + reserved) of a key.", labels=labels
        )
        reserved = GaugeMetricFamily(
            "quotalang_ledger_reserved", "Pending reservations of a group's key.", labels=labels
        )
        free = GaugeMetricFamily(
            "quotalang_ledger_free", "hard − carved for children − used, floored at 0.", labels=labels
        )
        cash_used = GaugeMetricFamily(
            "quotalang_cash_used_seconds", "Cash spent this period, in unit-seconds.", labels=labels
        )
        cash_budget = GaugeMetricFamily(
            "quotalang_cash_budget_seconds", "Cash budget per period, in unit-seconds.", labels=labels
        )
        cash_free = GaugeMetricFamily(
            "quotalang_cash_free_seconds",
            "Cash the group's own workloads may still spend: budget − children's budgets − used, floored at 0.",
            labels=labels,
        )
        cash_renews = GaugeMetricFamily(
            "quotalang_cash_period_end_timestamp_seconds",
            "When the current period ends and the budget renews (UTC epoch s); +Inf for a lifetime budget.",
            labels=labels,
        )
        observed = GaugeMetricFamily(
            "quotalang_ledger_observed", "A group's observed usage of a key in one cluster (several clusters).",
            labels=[*labels, "cluster"],
        )
        clusters = self._clusters()
        policy = self._policy()
        now = self._clock()
        own: dict[str, Mapping[str, int]] = {}
        if policy is not None:
            for name, group in policy.groups.items():
                numbers = self._ledger.group_usage(name)
                own[name] = numbers.used
                by_cluster = numbers.observed_by_cluster
                for r in limit_rows(group, numbers.used):
                    hard.add_metric([name, r.key], approximate(r.hard))
                    used.add_metric([name, r.key], approximate(r.used))
                    reserved.add_metric([name, r.key], approximate(numbers.reserved.get(r.key, 0)))
                    free.add_metric([name, r.key], approximate(r.free))
                    for cluster in clusters:
                        seen = by_cluster.get(cluster, {}).get(r.key, 0)
                        observed.add_metric([name, r.key, cluster], approximate(seen))
                for c in cash_rows(group, numbers.cash):
                    cash_used.add_metric([name, c.key], approximate(c.used))
                    cash_budget.add_metric([name, c.key], approximate(c.budget))
                    cash_free.add_metric([name, c.key], approximate(c.free))
                    cash_renews.add_metric([name, c.key], period_end(group.cash[c.key].period, now))
        yield from (hard, used, reserved, free, cash_used, cash_budget, cash_free, cash_renews)
        if clusters:
            yield observed
        if policy is not None and policy.lending:
            yield from borrowing_gauges(policy, own, labels)


def borrowing_gauges(policy: CompiledPolicy, own: Mapping[str, Mapping[str, int]],
                     labels: list[str]) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    """`quotalang_borrowed` and `quotalang_lent` from the usage just read (`own`: group -> its own usage)."""
    borrowed = GaugeMetricFamily(
        "quotalang_borrowed", "What a group borrows of a key beyond its hard limit, from its ancestors.",
        labels=labels)
    lent = GaugeMetricFamily(
        "quotalang_lent", "What of a group's lendable part of a key others hold now.", labels=labels)
    for name, keys in figures(policy.groups, policy.lending, lambda g: own.get(g, {})).items():
        for key, row in keys.items():
            borrowed.add_metric([name, key], approximate(row.borrowed))
            lent.add_metric([name, key], approximate(row.lent_out))
    return borrowed, lent


class ClusterCollector(Collector):
    """Each registered cluster: reachable, synced (nothing where no Fleet runs: a follower)."""

    def __init__(self, names: tuple[str, ...], health: Callable[[], Mapping[str, ClusterReport]]) -> None:
        self._names = names
        self._health = health

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        reachable = GaugeMetricFamily(
            "quotalang_cluster_reachable",
            "1 while the cluster's watches work; 0 while they fail (its last observed usage stays charged).",
            labels=["cluster"],
        )
        synced = GaugeMetricFamily(
            "quotalang_cluster_synced", "1 once the cluster was listed in full at least once.", labels=["cluster"]
        )
        health = self._health()
        for name in self._names:
            found = health.get(name)
            if found is not None:
                reachable.add_metric([name], 1 if found.reachable else 0)
                synced.add_metric([name], 1 if found.synced else 0)
        yield from (reachable, synced)
