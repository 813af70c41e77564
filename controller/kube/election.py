"""Leader election on a `coordination.k8s.io/v1` Lease: one replica reconciles and accrues cash.

Every replica serves admission; only the leader watches workloads, folds and
expires reservations and accrues cash. The algorithm is client-go's:

* A follower reads the Lease every `retry_period`. It takes the Lease when
  the holder is empty (released on a clean stop) or when the record has not
  changed for `lease_duration` *as measured on the follower's own clock*
  since it last saw it change (so clock skew between replicas does not
  matter). Taking and renewing are compare-and-swaps on `resourceVersion`:
  of two followers that try at once, one wins.
* The leader renews every `renew_period` (lease/3) and steps down when it has
  not renewed for `renew_deadline` (2/3 of the lease), which is before any
  follower may take over.
* `epoch` is a fencing token: the Lease's resourceVersion written by the
  acquisition (etcd revisions only grow, even if the Lease is deleted and
  made again). The ledger store stamps it on every leader write and refuses
  writes from an older epoch, so a leader that was paused past its lease and
  wakes up cannot undo its successor's work, and cash moves forward only by
  CAS from the time stored in the ledger: no interval is accrued twice.

`clock` (wall seconds, for the times written into the Lease) and `monotonic`
(for the expiry arithmetic) are injectable; `step()` runs one round, so tests
drive the election without threads or sleeps.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quotalang.controller.kube.api import ApiError, KubeApi, KubeError
from quotalang.controller.kube.times import format_time

LOG = logging.getLogger("quotalang.election")
DEFAULT_LEASE = 15.0
DEFAULT_NAME = "quotalang-ledger-leader"


@dataclass(frozen=True, slots=True)
class _Record:
    holder: str
    renew_time: str
    transitions: int


class LeaderElector:
    """Acquires, renews and releases one Lease; `is_leader` and `epoch` say where this replica stands."""

    def __init__(
        self,
        api: KubeApi,
        *,
        namespace: str,
        identity: str,
        name: str = DEFAULT_NAME,
        lease_duration: float = DEFAULT_LEASE,
        renew_period: float | None = None,
        retry_period: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_started: Callable[[int], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_period = renew_period if renew_period is not None else lease_duration / 3
        self.retry_period = retry_period if retry_period is not None else min(self.renew_period, 2.0)
        self.renew_deadline = lease_duration * 2 / 3
        self._clock = clock
        self._monotonic = monotonic
        self.on_started = on_started
        self.on_stopped = on_stopped
        self._leader = False
        self._epoch: int | None = None
        self._renewed_at = 0.0  # monotonic, last successful acquire or renew
        self._observed: _Record | None = None
        self._observed_at = 0.0  # monotonic, when the record last changed in our eyes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions = 0  # how many times this replica became leader

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    @property
    def is_leader(self) -> bool:
        """Leader, and renewed recently enough that no follower can have taken over yet."""
        return self._leader and self._monotonic() - self._renewed_at < self.renew_deadline

    def epoch(self) -> int | None:
        """The fencing token while leader, else None (the ledger store's `fence`)."""
        return self._epoch if self.is_leader else None

    def holder(self) -> str | None:
        """Who holds the Lease as last read (None before the first read or when released)."""
        return self._observed.holder or None if self._observed is not None else None

    # --------------------------------------------------------------- one round
    def step(self) -> bool:
        """Try to acquire or renew once; return whether this replica leads afterwards."""
        now_mono = self._monotonic()
        try:
            lease = self.api.request("GET", self.path, timeout=self._timeout())
        except ApiError as exc:
            if exc.status != 404:
                return self._failed(exc)
            return self._create(now_mono)
        except KubeError as exc:
            return self._failed(exc)
        spec = lease.get("spec") or {}
        record = _Record(str(spec.get("holderIdentity") or ""), str(spec.get("renewTime") or ""),
                         int(spec.get("leaseTransitions") or 0))
        if record != self._observed:
            self._observed, self._observed_at = record, now_mono
        mine = record.holder == self.identity
        if record.holder and not mine and now_mono - self._observed_at < self.lease_duration:
            return self._lost(f"held by {record.holder}") if self._leader else False
        if self._leader and not mine:
            self._lost(f"taken by {record.holder or 'nobody'}")
        takeover = not (mine and self._leader)  # a restart with our own name counts as a new acquisition
        now = format_time(self._clock())
        spec = dict(spec)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=max(round(self.lease_duration), 1),
                    renewTime=now)
        if takeover:
            spec.update(acquireTime=now, leaseTransitions=record.transitions + (0 if mine else 1))
        lease["spec"] = spec
        try:
            written = self.api.request("PUT", self.path, body=lease, timeout=self._timeout())
        except ApiError as exc:
            if exc.status == 409:  # someone else wrote first: read again next round
                return self._lost("lost a race for the lease") if self._leader else False
            return self._failed(exc)
        except KubeError as exc:
            return self._failed(exc)
        return self._won(written, now_mono, takeover)

    def _create(self, now_mono: float) -> bool:
        now = format_time(self._clock())
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": self.identity,
                     "leaseDurationSeconds": max(round(self.lease_duration), 1),
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }
        try:
            written = self.api.request("POST", self.path.rsplit("/", 1)[0], body=lease, timeout=self._timeout())
        except ApiError as exc:
            return False if exc.status == 409 else self._failed(exc)
        except KubeError as exc:
            return self._failed(exc)
        return self._won(written, now_mono, True)

    def _won(self, lease: dict[str, Any], now_mono: float, takeover: bool) -> bool:
        spec = lease.get("spec") or {}
        self._observed = _Record(self.identity, str(spec.get("renewTime") or ""),
                                 int(spec.get("leaseTransitions") or 0))
        self._observed_at = self._renewed_at = now_mono
        if takeover or not self._leader:
            rv = str((lease.get("metadata") or {}).get("resourceVersion") or "")
            self._epoch = int(rv) if rv.isdigit() else int(spec.get("leaseTransitions") or 0)
            self._leader = True
            self.transitions += 1
            LOG.info("became the leader (lease %s/%s, epoch %s)", self.namespace, self.name, self._epoch)
            if self.on_started is not None:
                self.on_started(self._epoch)
        return True

    def _failed(self, exc: Exception) -> bool:
        LOG.warning("lease %s/%s: %s", self.namespace, self.name, exc)
        if self._leader and self._monotonic() - self._renewed_at >= self.renew_deadline:
            return self._lost("could not renew within the renew deadline")
        return self.is_leader

    def _lost(self, why: str) -> bool:
        was = self._leader
        self._leader, self._epoch = False, None
        if was:
            LOG.warning("stopped leading (lease %s/%s): %s", self.namespace, self.name, why)
            if self.on_stopped is not None:
                self.on_stopped()
        return False

    def _timeout(self) -> float:
        return max(min(self.renew_period, 5.0), 0.5)

    # ---------------------------------------------------------- the thread
    def run(self) -> None:
        """Step until `stop()`: every renew period while leading, every retry period otherwise."""
        while not self._stop.is_set():
            try:
                leading = self.step()
            except Exception as exc:  # a callback failing must not end the election
                LOG.error("leader election round failed: %s: %s", type(exc).__name__, exc)
                leading = self.is_leader
            self._stop.wait(self.renew_period if leading else self.retry_period)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop the thread; when leading and `release`, hand the Lease back so a successor starts at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout() + 1)
            self._thread = None
        if release and self._leader:
            self.release()
        elif self._leader:
            self._lost("stopped")

    def release(self) -> bool:
        """Empty the holder (CAS), stepping down first so nothing is written as leader after it."""
        self._lost("released")
        try:
            lease = self.api.request("GET", self.path, timeout=self._timeout())
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return False
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": format_time(self._clock())}
            self.api.request("PUT", self.path, body=lease, timeout=self._timeout())
        except KubeError as exc:
            LOG.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)
            return False
        LOG.info("released the lease %s/%s", self.namespace, self.name)
        return True


__all__ = ["DEFAULT_LEASE", "DEFAULT_NAME", "LeaderElector"]
