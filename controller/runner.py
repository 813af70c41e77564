"""The controller: one watcher per policy kind plus pods, and the upkeep that times them.

Threads, not the event loop: admission runs on uvicorn's loop and must never
wait for a LIST. The watchers feed the `Reconciler`; one upkeep thread, once
a second, follows policy reloads (starting and stopping watchers as kinds
come and go, and relisting everything so usage is recomputed under the new
rules), expires reservations, and every `accrue_every` seconds accrues cash
and, with a state file, saves it. Stopping accrues and saves one last time,
so a restart loses nothing.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from quotalang.compiler import CompiledPolicy
from quotalang.controller import cash_file
from quotalang.controller.kube import limit_ranges, priority_classes
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.kube.naming import collection_path
from quotalang.controller.kube.watch import Watcher
from quotalang.controller.ledger.base import ControllerLedger
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.reclaim import Reclaimer
from quotalang.controller.reconcile import PODS, Reconciler

LOG = logging.getLogger("quotalang.controller")
DEFAULT_RESYNC = 300.0  # like the native quota controller
DEFAULT_ACCRUE_EVERY = 30.0
POD_PATH = "/api/v1/pods"


def sources(policy: CompiledPolicy) -> dict[str, str]:
    """Source name → collection path: every kind the policy has a rule for, and pods (for cash)."""
    out = {PODS: POD_PATH}
    for api_version, kind in sorted(policy.kinds):
        path = collection_path(api_version, kind)
        if path != POD_PATH:
            out[path.removeprefix("/apis/").removeprefix("/api/")] = path
    return out


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll `condition` every 50 ms until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


class Controller:
    """Watches, reconciles and accrues until `stop()`."""

    def __init__(
        self,
        api: KubeApi,
        policy: Callable[[], CompiledPolicy | None],
        ledger: ControllerLedger,
        *,
        resync: float = DEFAULT_RESYNC,
        accrue_every: float = DEFAULT_ACCRUE_EVERY,
        state_file: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        cluster: str = "",
        limit_source: limit_ranges.LimitRangeSource | None = None,
    ) -> None:
        self.api = api
        self.cluster = cluster
        self.policy = policy
        self.ledger = ledger
        self.resync = resync
        self.accrue_every = accrue_every
        self.state_file = Path(state_file) if state_file else None
        self.reconciler = Reconciler(ledger, policy, clock=clock, cluster=cluster)
        self.watchers: dict[str, Watcher] = {}
        self._checksum: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.limit_ranges = limit_ranges.LimitRangeIndex()
        self.limit_source = limit_source
        self._limit_watch: Watcher | None = None
        self.priority_classes = priority_classes.PriorityClassIndex()
        self._priority_watch: Watcher | None = None
        # issue 29: suspends or deletes the borrowers admissions named, where the store records them
        # (in a fleet, each member's through its own client: those recorded in its cluster)
        self.reclaimer = Reclaimer(api, ledger, cluster=cluster) if isinstance(ledger, MemoryLedger) else None
        # False under a Fleet, which accrues every cluster's pods at once and keeps the state file.
        self.keeps_cash = True
        # True under a Fleet: a member's watchers list again after a failure (see `Watcher`).
        self.relist_after_failure = False

    def start(self) -> None:
        source = self.limit_source
        if source is not None and not source.installed(self.cluster):
            # Pods are charged as the LimitRanger will store them: the engine applies this cluster's index
            # (a kubernetes store's runtime already watches them on every replica; then this one is unused).
            source.install(self.limit_ranges, self.cluster)
            self._limit_watch = Watcher(self.api, limit_ranges.SOURCE, limit_ranges.PATH, self.limit_ranges,
                                        resync=self.resync, relist_after_failure=self.relist_after_failure)
            self._limit_watch.start()
            # PriorityClass values, for who may borrow; not part of readiness (a cluster that denies the
            # list still admits: a named class is then unknown, so not reclaimable)
            source.install_priorities(self.priority_classes, self.cluster)
            self._priority_watch = Watcher(self.api, priority_classes.SOURCE, priority_classes.PATH,
                                           self.priority_classes, resync=self.resync,
                                           relist_after_failure=self.relist_after_failure)
            self._priority_watch.start()
        if self.state_file is not None and self.keeps_cash:
            restored = cash_file.load(self.state_file, self.ledger)  # raises CashFileError, shown to the user
            if restored:
                LOG.info("restored the cash of %d groups from %s", restored, self.state_file)
        self.follow_policy()
        self._thread = threading.Thread(target=self._upkeep, name="controller-upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; accrue and save one last time."""
        self._stop.set()
        with self._lock:
            for watcher in self.watchers.values():
                watcher.stop()
        if self._limit_watch is not None:
            self._limit_watch.stop()
        if self._priority_watch is not None:
            self._priority_watch.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            if self.synced and self.keeps_cash:
                self.accrue()
        except Exception as exc:  # a follower that lost the lease, an apiserver gone: nothing to save
            LOG.warning("final cash accrual skipped: %s", exc)

    @property
    def synced(self) -> bool:
        """Every watcher (LimitRanges too) has listed its collection once (readiness)."""
        if self._limit_watch is not None and not self._limit_watch.listed.is_set():
            return False
        with self._lock:
            return bool(self.watchers) and all(w.listed.is_set() for w in self.watchers.values())

    def watching(self) -> list[Watcher]:
        """Every watcher it runs now (the LimitRanges' too): what its cluster's health is read from."""
        with self._lock:
            found = list(self.watchers.values())
        return [*found, self._limit_watch] if self._limit_watch is not None else found

    def wait_synced(self, timeout: float) -> bool:
        return wait_for(lambda: self.synced, timeout)

    def follow_policy(self) -> None:
        """Watch what the current policy needs; on a new policy, relist everything at once.

        A watch in flight cannot be interrupted, so a new policy gets new
        watchers (their first listings recompute every object under the new
        rules) and the old ones end at their next event; the reconciler
        ignores anything older than what it has seen.
        """
        policy = self.policy()
        if policy is None or policy.checksum == self._checksum:
            return
        wanted = sources(policy)
        with self._lock:
            old, self.watchers = self.watchers, {}
            for watcher in old.values():
                watcher.stop()
            for name, path in wanted.items():
                watcher = Watcher(self.api, name, path, self.reconciler, resync=self.resync,
                                  relist_after_failure=self.relist_after_failure)
                if name in old:
                    watcher.listed.set()  # still ready: the old listing holds until the new one lands
                self.watchers[name] = watcher
                watcher.start()
        if self._checksum is not None:
            LOG.info("policy %s: relisting %d collections to recompute usage", policy.checksum[:12], len(wanted))
        self._checksum = policy.checksum

    def accrue(self) -> None:
        self.reconciler.accrue()
        policy = self.policy()
        if self.state_file is not None and policy is not None:
            cash_file.save(self.state_file, self.ledger, [n for n, g in policy.groups.items() if g.cash])

    def _upkeep(self) -> None:
        last_accrual = last_recompute = time.monotonic()
        first_sync = True
        # Until the first sync, a short tick: a durable ledger's reconciler holds what it observes until
        # then (`Reconciler.synced`), and an admission the watch sees meanwhile is folded only at its
        # object's next event (else it is counted twice until its reservation expires).
        while not self._stop.wait(0.05 if first_sync else 1.0):
            try:
                self.follow_policy()
                self.ledger.expire()
                if not self.synced:
                    continue  # no accrual before every owner is known: a pod's group may still be unknown
                if first_sync:
                    self.reconciler.synced()
                    # The first sync built the bulk of what lives as long as the process: out of the
                    # cyclic collector's sight, full collections stay short (measured: ~40% of a resync).
                    gc.collect()
                    gc.freeze()
                    first_sync = False
                self.reconciler.resolve_pods()
                if self.reclaimer is not None:
                    self.reclaimer.run_once()
                if time.monotonic() - last_recompute >= self.resync:
                    last_recompute = time.monotonic()
                    self.reconciler.recompute()
                if self.keeps_cash and time.monotonic() - last_accrual >= self.accrue_every:
                    last_accrual = time.monotonic()
                    self.accrue()
            except Exception as exc:  # keep going: the next round may succeed (an apiserver back, a new leader)
                LOG.error("controller upkeep failed: %s: %s", type(exc).__name__, exc)


__all__ = ["DEFAULT_ACCRUE_EVERY", "DEFAULT_RESYNC", "Controller", "sources", "wait_for"]
