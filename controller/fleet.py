"""Several clusters, one ledger: a Controller per member cluster, and the cash they share.

Each member has its own `Controller` (its own client, watchers, backoff,
LimitRange index and periodic resync), built with `cluster=NAME` so that
every identity it observes is that cluster's and its resync replaces only
that cluster's share (`ControllerLedger.resync(..., cluster)`). What they
must not each do is done here once:

* Cash. The last accrual time is the group's, so two accruals of one group
  (one per controller) would each skip the other's pods. The Fleet turns
  the controllers' own accrual off and accrues every group once over the
  pod runs of every cluster, after every cluster has listed once (before
  that a cluster's pods are not known yet, and an accrual would move the
  group's last accrual time past them). The cash state file (memory store)
  is loaded and saved here too.
* LimitRanges. Each member's controller installs its index under its own
  cluster's name (`LimitRangeSource`), so a review is defaulted by its own
  cluster's LimitRanges.
* Health. A member whose watches fail keeps its last observed usage charged:
  its controller keeps what it saw and its resyncs hand it on unchanged,
  nothing is forgotten and no empty listing replaces it. Its watchers list
  again after a failure (`Watcher.relist_after_failure`), so when it answers
  again its first round is a full listing, which replaces its share only
  (an outage may outlive the watch history, or the member's etcd).
  `clusters()` reports each member; a member going unreachable after the
  first sync does not make the Fleet unsynced, since the others keep
  deciding.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from quotalang.controller import cash_file
from quotalang.controller.cash import PodRun
from quotalang.controller.ledger.base import ControllerLedger
from quotalang.controller.reconcile import accrue_runs
from quotalang.controller.runner import Controller, wait_for
from quotalang.controller.spending import Spending

LOG = logging.getLogger("quotalang.controller")


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    """One member as `/readyz`, the API and metrics report it.

    `reachable`: none of its watches is failing now. `synced`: it has listed
    everything once. `last_error`: what the failing watches last got (None
    while reachable). `since`: wall-clock seconds since which `reachable` has
    held its value (None before its first list or watch ended either way).
    """

    name: str
    reachable: bool
    synced: bool
    last_error: str | None
    since: float | None


def health(name: str, controller: Controller) -> ClusterHealth:
    """A member's health from its watchers: unreachable while any of them fails."""
    watchers = controller.watching()
    failing = [w for w in watchers if w.failure is not None]
    if failing:
        first = min(failing, key=lambda w: w.failing_since or 0.0)
        return ClusterHealth(name, False, controller.synced, first.failure, first.failing_since)
    working = [w.working_since for w in watchers if w.working_since is not None]
    return ClusterHealth(name, True, controller.synced, None, max(working) if working else None)


class Fleet:
    """One Controller per member cluster over one ledger; `start`, `stop`, and cash for all of them."""

    def __init__(
        self,
        controllers: Mapping[str, Controller],
        ledger: ControllerLedger,
        *,
        accrue_every: float | None = None,
        state_file: str | Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`accrue_every` and `state_file` default to the controllers' (which are built alike)."""
        if not controllers:
            raise ValueError("a Fleet needs at least one cluster")
        for name, controller in controllers.items():
            if controller.cluster != name:
                raise ValueError(f"the controller of cluster {name!r} was built for cluster {controller.cluster!r}")
            if controller.ledger is not ledger:
                raise ValueError(f"the controller of cluster {name!r} keeps another ledger")
        self.controllers = dict(controllers)
        self.ledger = ledger
        self.spending = Spending()  # what each workload spent this period, in every cluster (accrue)
        first = next(iter(self.controllers.values()))
        self.policy = first.policy
        self.accrue_every = first.accrue_every if accrue_every is None else accrue_every
        given = state_file if state_file is not None else first.state_file
        self.state_file = Path(given) if given else None
        self._clock = clock
        for controller in self.controllers.values():
            controller.keeps_cash = False  # one accrual per group, here
            controller.relist_after_failure = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable: set[str] = set()

    # ------------------------------------------------------------ running
    def start(self) -> None:
        if self.state_file is not None:
            restored = cash_file.load(self.state_file, self.ledger)  # raises CashFileError, shown to the user
            if restored:
                LOG.info("restored the cash of %d groups from %s", restored, self.state_file)
        for controller in self.controllers.values():
            controller.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._upkeep, name="fleet-upkeep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop every member's controller; accrue and save one last time."""
        self._stop.set()
        for controller in self.controllers.values():
            controller.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            if self.synced:
                self.accrue()
        except Exception as exc:  # a follower that lost the lease, an apiserver gone: nothing to save
            LOG.warning("final cash accrual skipped: %s", exc)

    @property
    def synced(self) -> bool:
        """Every member has listed everything once (a member unreachable since then does not undo it)."""
        return all(c.synced for c in self.controllers.values())

    def wait_synced(self, timeout: float) -> bool:
        return wait_for(lambda: self.synced, timeout)

    def clusters(self) -> dict[str, ClusterHealth]:
        return {name: health(name, c) for name, c in self.controllers.items()}

    # -------------------------------------------------------------- cash
    def runs(self) -> Iterable[PodRun]:
        """The pod runs of every member (a member that cannot be reached keeps its last ones running)."""
        return [run for c in self.controllers.values() for run in c.reconciler.runs()]

    def accrue(self, now: float | None = None) -> int:
        """Accrue every cash-budgeted group once, over the pods of every cluster; save the state file."""
        policy = self.policy()
        if policy is None:
            return 0
        now = self._clock() if now is None else now
        changed = accrue_runs(self.ledger, policy, self.runs(), now, self.spending)
        for controller in self.controllers.values():
            controller.reconciler.accrued(now)
        if self.state_file is not None:
            cash_file.save(self.state_file, self.ledger, [n for n, g in policy.groups.items() if g.cash])
        return changed

    # ------------------------------------------------------------ upkeep
    def watch_health(self) -> dict[str, ClusterHealth]:
        """Log members going away and coming back (once each way, not once per failed call)."""
        found = self.clusters()
        for name, report in found.items():
            if not report.reachable and name not in self._unreachable:
                self._unreachable.add(name)
                LOG.warning("cluster %s cannot be reached (%s): its last observed usage stays charged",
                            name, report.last_error)
            elif report.reachable and name in self._unreachable:
                self._unreachable.discard(name)
                LOG.info("cluster %s answers again: relisted", name)
        return found

    def _upkeep(self) -> None:
        last_accrual = time.monotonic()
        while not self._stop.wait(1.0):
            try:
                self.watch_health()
                if self.synced and time.monotonic() - last_accrual >= self.accrue_every:
                    last_accrual = time.monotonic()
                    self.accrue()
            except Exception as exc:  # keep going: the next round may succeed (an apiserver back, a new leader)
                LOG.error("fleet upkeep failed: %s: %s", type(exc).__name__, exc)


__all__ = ["ClusterHealth", "Fleet", "health"]
