"""`--store kubernetes`: the shared ledger, its upkeep and the leader election for one replica.

`serve` builds the ledger with `kubernetes_store(...)`, hands `store.ledger`
to `create_app`, calls `store.start()` before serving and `store.stop()`
after. Every replica admits; the one holding the Lease reconciles: its
controller (the watch of workloads and pods, cash accrual) is started by
`on_leader(ledger)` and stopped by `on_follower()`, and writes through the
same `store.ledger` (`observe`, `forget`, `resync`, `update_cash`, ...),
fenced by the Lease epoch.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from quotalang.controller.kube.api import KubeApi, KubeError
from quotalang.controller.kube.election import DEFAULT_LEASE, LeaderElector
from quotalang.controller.kube.limit_ranges import LimitRangeSource
from quotalang.controller.kube.naming import api_group, collection_path
from quotalang.controller.ledger.base import DEFAULT_RESERVATION_TTL, ObjectKey
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.runtime import StoreRuntime, install_crd
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.errors import QuotalangError
from quotalang.server.logs import log_event
from quotalang.server.metrics import Metrics
from quotalang.server.reload import PolicyHolder

LOG = logging.getLogger("quotalang.serve")


class StoreError(QuotalangError):
    """The kubernetes store could not start (bad kubeconfig, no CRD and no right to create it)."""


def replica_name() -> str:
    """`$POD_NAME` (the Deployment sets it from the downward API), else host and pid."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def lease_namespace() -> str:
    """`$POD_NAMESPACE`, else the in-cluster service account's namespace, else `default`."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        with open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as file:
            return file.read().strip() or "default"
    except OSError:
        return "default"


def live_lookup(
    api: KubeApi | Mapping[str, KubeApi], holder: PolicyHolder, timeout: float = 2.0
) -> Callable[[ObjectKey], Any]:
    """Find a workload by a GET (a `/scale` parent this replica neither admitted nor observed).

    Every replica serves `/scale`, but only the leader watches workloads; a
    follower asks the apiserver (the ClusterRole may get every policy kind).
    With several clusters `api` maps each cluster's name to its client, read
    at call time, and the identity's cluster says which to ask. None when the
    kind has no rule, the object is gone, the cluster is unknown, or the call
    fails: the engine then denies the scale with a message, rather than let
    quota be evaded.
    """

    def find(identity: ObjectKey) -> Mapping[str, Any] | None:
        policy = holder.policy
        client = api.get(identity.cluster) if isinstance(api, Mapping) else api
        if policy is None or client is None:
            return None
        for api_version, kind in policy.kinds:
            if kind == identity.kind and api_group(api_version) == identity.api_group:
                path = f"{collection_path(api_version, kind, identity.namespace)}/{identity.name}"
                try:
                    return client.request("GET", path, timeout=timeout)
                except KubeError:
                    return None
        return None

    return find


@dataclass
class KubernetesStore:
    """The pieces `serve` starts and stops."""

    api: KubeApi
    ledger: KubernetesLedger
    elector: LeaderElector
    runtime: StoreRuntime

    def start(self) -> None:
        self.runtime.start()

    def stop(self) -> None:
        """Hand the Lease back (a successor takes over at once), stop the threads."""
        self.runtime.stop(release=True)
        self.api.close()


def kubernetes_store(
    holder: PolicyHolder,
    metrics: Metrics | None = None,
    *,
    kubeconfig: str | None = None,
    namespace: str | None = None,
    replica: str | None = None,
    lease_duration: float = DEFAULT_LEASE,
    reservation_ttl: float = DEFAULT_RESERVATION_TTL,
    on_leader: Callable[[KubernetesLedger], None] | None = None,
    on_follower: Callable[[], None] | None = None,
    fallback_lookup: Callable[[ObjectKey], Mapping[str, Any] | None] | None = None,
    create_crd: bool = True,
    limit_source: LimitRangeSource | None = None,
) -> KubernetesStore:
    """Connect, make sure the CRD is served, and build ledger, election and upkeep (nothing runs yet).

    `fallback_lookup` (default: `live_lookup`) finds `/scale` parents the
    ledger does not know; the controller may pass its observed index.
    """
    replica = replica or replica_name()
    namespace = namespace or lease_namespace()
    try:
        api = KubeApi.from_config(kubeconfig)
    except Exception as exc:  # the kubernetes package raises several kinds for a bad kubeconfig
        raise StoreError(f"cannot configure the kubernetes client: {exc}") from None
    if create_crd:
        try:
            if install_crd(api):
                log_event(LOG, logging.INFO, "installed the QuotaLedger CRD")
        except KubeError as exc:
            raise StoreError(
                f"the QuotaLedger CRD is not served and could not be created ({exc}); "
                "apply `quotalang manifests` first"
            ) from None
    try:
        tuning = Tuning(reservation_ttl=reservation_ttl)
    except ValueError as exc:  # a --reservation-ttl the store's other timings do not fit in
        raise StoreError(f"the kubernetes store cannot use this reservation TTL: {exc}") from None
    ledger = KubernetesLedger(api, replica=replica, tuning=tuning,
                              fallback_lookup=fallback_lookup or live_lookup(api, holder))

    def started(epoch: int) -> None:
        log_event(LOG, logging.INFO, "leading: this replica reconciles the ledger", replica=replica, epoch=epoch)
        if on_leader is not None:
            on_leader(ledger)

    def stopped() -> None:
        log_event(LOG, logging.WARNING, "no longer leading", replica=replica)
        if on_follower is not None:
            on_follower()

    elector = LeaderElector(api, namespace=namespace, identity=replica, lease_duration=lease_duration,
                            on_started=started, on_stopped=stopped)
    runtime = StoreRuntime(ledger, lambda: holder.policy, elector, limit_source=limit_source)
    if metrics is not None:
        metrics.registry.register(runtime.collector())
    return KubernetesStore(api, ledger, elector, runtime)


__all__ = ["KubernetesStore", "StoreError", "kubernetes_store", "lease_namespace", "live_lookup", "replica_name"]
