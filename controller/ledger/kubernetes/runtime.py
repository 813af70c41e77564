"""What runs beside a `KubernetesLedger`: its watch-fed cache, ledger upkeep, election, metrics.

* `LedgerWatch` keeps the cache current through `kube.watch.Watcher` (the
  one list+watch loop): LIST, then WATCH from the list's version with
  bookmarks; `410 Gone` relists; errors back off. A stale cache
  costs a 409 and a re-read, never a wrong answer (see `kubernetes.admission`).
* `StoreRuntime` ties the store to the policy and the election: ledger
  objects are created for the policy's groups on start and whenever a
  different policy is swapped in; a group removed from the policy keeps its
  ledger until it holds nothing (then the leader deletes it, guarded by its
  resourceVersion), and is reported meanwhile (a log line when the set
  changes, `quotalang_ledger_orphan_group`, `orphans`). The leader also
  expires reservations nobody will fold.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quotalang.controller.kube import limit_ranges
from quotalang.controller.kube.api import ApiError, KubeApi
from quotalang.controller.kube.election import LeaderElector
from quotalang.controller.kube.watch import Backoff, Gone, Watcher
from quotalang.controller.ledger.base import NotLeader
from quotalang.controller.ledger.crd import COLLECTION_PATH, CRD_NAME, LedgerFormatError, from_object
from quotalang.controller.ledger.crd_schema import crd
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.policy import CompiledPolicy

LOG = logging.getLogger("quotalang.kubestore")
WATCH_SECONDS = 60
SOURCE = "quotaledgers"  # the watcher's name for the collection (logs, thread)


class LedgerWatch:
    """Feeds a ledger's cache from a `Watcher` of every QuotaLedger (the one list+watch loop): it is the sink.

    The watcher LISTs (the listing replaces the cache), WATCHes from the
    list's version with bookmarks, relists on `410 Gone` and backs off on
    errors (at most 5 s here: a replica whose cache is stale cannot answer
    asks, see `asking`); the cache is never relisted on a timer.
    """

    def __init__(self, ledger: KubernetesLedger) -> None:
        self.ledger = ledger
        self.watcher = Watcher(ledger.api, SOURCE, COLLECTION_PATH, self, resync=math.inf,
                               watch_seconds=WATCH_SECONDS)
        self.watcher.backoff = Backoff(initial=0.2, cap=5.0)

    @property
    def synced(self) -> threading.Event:
        """Set after the first LIST."""
        return self.watcher.listed

    def run(self) -> None:
        self.watcher.run()

    def stop(self) -> None:
        self.watcher.stop()

    def step(self, version: str | None) -> str | None:
        """One round: LIST when `version` is None, then WATCH until the stream ends; the version to resume
        from (None: relist, after `410 Gone`). Other errors are raised: `run` backs off, a simulation decides."""
        try:
            if version is None:
                version = self.watcher.list_once()
            return self.watcher.watch_once(version, WATCH_SECONDS)
        except Gone:
            return None

    # ------------------------------------------------------------ the sink
    def replace(self, source: str, items: Iterable[dict[str, Any]]) -> None:
        self.ledger.load(items)

    def apply(self, source: str, event: str, obj: dict[str, Any]) -> None:
        try:
            state = from_object(obj)
        except LedgerFormatError as exc:
            LOG.error("skipping an unreadable ledger object: %s", exc)
            return
        if event == "DELETED":
            self.ledger.drop(state.group, state.resource_version)
        else:
            self.ledger.remember(state)


class StoreRuntime:
    """Threads and upkeep for one replica's kubernetes store."""

    def __init__(
        self,
        ledger: KubernetesLedger,
        policy: Callable[[], CompiledPolicy | None],
        elector: LeaderElector | None = None,
        *,
        interval: float = 2.0,
        fold_interval: float = 0.1,
        limit_source: limit_ranges.LimitRangeSource | None = None,
    ) -> None:
        self.ledger = ledger
        # The leader's observations are written once per group per fold interval, as native quota
        # batches a namespace's admissions; every replica writes its confirmed admissions' sum as often.
        self.fold_interval = fold_interval
        ledger.fold_interval = fold_interval
        self.policy = policy
        if ledger.policy is None:  # the terms a draw is registered under (`kubernetes.registering`)
            ledger.policy = policy
        self.elector = elector
        self.interval = interval
        self.orphans: list[str] = []
        self._stop = threading.Event()
        self.watch = LedgerWatch(ledger)
        self._threads: list[threading.Thread] = []
        self._synced_checksum: str | None = None
        if elector is not None:
            ledger.fence = elector.epoch
        # Every replica admits, so every replica charges pods with their namespace's LimitRange defaults
        # (by default those of the cluster the store is in; `limit_ranges_from` for several clusters).
        self.limit_ranges = limit_ranges.LimitRangeIndex()
        self.limit_source = limit_source if limit_source is not None else limit_ranges.LimitRangeSource()
        self.limit_source.install(self.limit_ranges)
        self._limit_sources: dict[str, tuple[KubeApi, limit_ranges.LimitRangeIndex]] = {
            "": (ledger.api, self.limit_ranges)}
        self._limit_watches: list[Watcher] = []

    def limit_ranges_from(self, apis: Mapping[str, KubeApi]) -> dict[str, limit_ranges.LimitRangeIndex]:
        """Several clusters (call before `start`): each review is charged with its own cluster's LimitRanges.

        Every replica admits for every cluster, so every replica watches each
        member's LimitRanges (not only the leader's Fleet); the engine picks
        the index by the review's cluster (`LimitRangeSource`).
        """
        self._limit_sources = {name: (api, limit_ranges.LimitRangeIndex()) for name, api in apis.items()}
        indexes = {name: index for name, (_, index) in self._limit_sources.items()}
        for name, index in indexes.items():
            self.limit_source.install(index, name)
        return indexes

    @property
    def is_leader(self) -> bool:
        return self.elector.is_leader if self.elector is not None else True

    def start(self, wait: float = 30.0) -> None:
        """Start the watch (waiting up to `wait` s for its first LIST), the upkeep and the election."""
        self._stop.clear()
        self._limit_watches = [Watcher(api, limit_ranges.SOURCE, limit_ranges.PATH, index)
                               for api, index in self._limit_sources.values()]
        for watcher in self._limit_watches:
            watcher.start()
        self._spawn(self.watch.run, "ledger-watch")
        if not self.watch.synced.wait(wait):
            LOG.warning("the ledger cache is not filled yet; admission reads the ledger objects directly")
        self.maintain()
        self._spawn(self._upkeep, "ledger-upkeep")
        if self.fold_interval > 0:
            self._spawn(self._folds, "ledger-folds")
        if self.elector is not None:
            self.elector.start()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, release: bool = True) -> None:
        """Stop upkeep and watch; hand the Lease back when leading (a successor starts at once)."""
        self._stop.set()
        self.watch.stop()
        for watcher in self._limit_watches:
            watcher.stop()
        if self.elector is not None:
            self.elector.stop(release=release)
        for thread in self._threads:
            if thread.name != "ledger-watch":  # the watch may sit in a read: it is a daemon, let it go
                thread.join(timeout=5)
        self._threads.clear()

    def _upkeep(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.maintain()
            except NotLeader:
                pass
            except Exception as exc:
                LOG.error("ledger upkeep failed: %s: %s", type(exc).__name__, exc)

    def _folds(self) -> None:
        while not self._stop.wait(self.fold_interval):
            try:
                self.ledger.flush(patient=True)
            except NotLeader:
                pass  # the queue goes with the lease: the next leader lists everything again
            except Exception as exc:
                LOG.error("ledger fold failed: %s: %s", type(exc).__name__, exc)
            try:
                self.ledger.tidy(patient=True)
            except Exception as exc:
                LOG.error("ledger tidy failed: %s: %s", type(exc).__name__, exc)

    def maintain(self) -> None:
        """One round: ledger objects for a new policy, orphans reported, the leader's cleanup."""
        policy = self.policy()
        if policy is None:
            return
        if policy.checksum != self._synced_checksum:
            created = self.ledger.ensure_groups(policy.groups)
            self._synced_checksum = policy.checksum
            if created:
                LOG.info("created %d ledger objects for policy %s", created, policy.checksum[:12])
        orphans = sorted(g for g in self.ledger.cached_groups() if g not in policy.groups)
        if orphans != self.orphans:
            if orphans:
                LOG.warning("groups removed from the policy keep their ledger until nothing of them is left: %s",
                            ", ".join(orphans))
            self.orphans = orphans
        if self.elector is None or self.is_leader:
            self.ledger.flush()  # what the fold thread has not written yet, before judging a ledger empty
            self.ledger.expire()
            self.ledger.republish_draws()  # pools counted under other terms (a new policy, an upgrade): again
            self.ledger.publish_draws()  # a pool's `drawn` counted while a fold's admissions were held twice
            for group in orphans:
                if self.ledger.delete_if_empty(group):
                    LOG.info("deleted the empty ledger of removed group %s", group)

    def collector(self) -> Collector:
        return _StoreCollector(self)


class _StoreCollector(Collector):
    """The store's own counters and the orphan groups, read at scrape time."""

    def __init__(self, runtime: StoreRuntime) -> None:
        self.runtime = runtime

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        stats = self.runtime.ledger.stats
        counters: list[tuple[str, str, Any]] = [
            ("quotalang_ledger_reads", "GETs of ledger objects.", stats.reads),
            ("quotalang_ledger_writes", "Ledger objects written (PUT/POST).", stats.writes),
            ("quotalang_ledger_conflicts", "Compare-and-swap writes refused with 409 (re-read, decided again).",
             stats.conflicts),
            ("quotalang_ledger_retries", "Ledger calls retried after an error (unreachable, 5xx, 429).",
             stats.retries),
            ("quotalang_ledger_unavailable", "Requests given up at their deadline (answered per failure mode).",
             stats.unavailable),
            ("quotalang_ledger_fenced", "Leader writes refused because a newer leader had written.", stats.fenced),
        ]
        for name, documentation, value in counters:
            family = CounterMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family
        orphan = GaugeMetricFamily("quotalang_ledger_orphan_group",
                                   "1 per group removed from the policy whose ledger still holds usage.",
                                   labels=["group"])
        for group in self.runtime.orphans:
            orphan.add_metric([group], 1)
        yield orphan
        leader = GaugeMetricFamily("quotalang_leader", "1 if this replica leads (reconciles, accrues cash).")
        leader.add_metric([], 1 if self.runtime.is_leader else 0)
        yield leader


def install_crd(api: KubeApi, timeout: float = 30.0) -> bool:
    """Create the QuotaLedger CRD if it is missing and wait until it is served; True if created.

    `quotalang manifests` installs it in a real deployment; this is for
    `serve --store kubernetes` against a bare cluster (tests, a laptop), and
    needs the right to create CRDs.
    """
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
    created = False
    try:
        api.request("GET", path, timeout=timeout)
    except ApiError as exc:
        if exc.status != 404:
            raise
        try:
            api.request("POST", path.rsplit("/", 1)[0], body=crd(), timeout=timeout)
            created = True
        except ApiError as again:
            if again.status != 409:
                raise
    deadline = time.monotonic() + timeout
    while True:
        try:
            api.request("GET", COLLECTION_PATH, timeout=timeout)
            return created
        except ApiError as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


__all__ = ["LedgerWatch", "StoreRuntime", "install_crd"]
