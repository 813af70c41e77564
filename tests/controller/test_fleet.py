"""A Fleet of two clusters over one memory ledger: shared cash, reachability, usage kept and relisted.

The clusters are fakes of the few calls a Watcher makes (LIST, WATCH) that
can be switched off like a stopped apiserver; the end-to-end suite runs the
same against real apiservers. Numbers by hand: every pod asks for 1 GPU (or
as given) and 1 cpu; group `a` may spend 100 GPU-hours a week.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller import MemoryLedger
from quotalang.controller.fleet import Fleet
from quotalang.controller.kube.api import KubeApi, Unreachable
from quotalang.controller.kube.limit_ranges import LimitRangeSource
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.reconcile import PODS
from quotalang.controller.runner import Controller
from quotalang.loader import load_text
from tests.asks import admit
from tests.e2e.kube_cluster import wait_until

NANO = 10**9
HOUR = 3600
MONDAY = 1_763_942_400.0  # 2025-11-24 00:00:00 UTC, a Monday
GPU = "requests.nvidia.com/gpu"
DEPLOYMENTS = "/apis/apps/v1/deployments"

POLICY = """\
settings {
  group label "team"
  unlabelled allow
}

group a {
  requests.cpu 100
  requests.nvidia.com/gpu 16
  cash requests.nvidia.com/gpu 100h per week
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "fleet.quota"))


class FakeCluster(KubeApi):
    """Collections by path, served as LIST pages and WATCH streams; `up = False` refuses every call."""

    def __init__(self, name: str) -> None:  # no client: nothing is dialled
        self.host = f"https://{name}.invalid"
        self.up = True
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}  # path -> name -> object
        self.events: list[tuple[str, int, dict[str, Any]]] = []  # (path, version, event)
        self.version = 1
        self.lock = threading.Lock()

    def put(self, path: str, obj: dict[str, Any], event: str = "ADDED") -> None:
        with self.lock:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            if event == "DELETED":
                self.objects.get(path, {}).pop(obj["metadata"]["name"], None)
            else:
                self.objects.setdefault(path, {})[obj["metadata"]["name"]] = obj
            if self.up:  # no history of what happened while it was away: only a relist shows it
                self.events.append((path, self.version, {"type": event, "object": obj}))

    def request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                query: Mapping[str, Any] | None = None, timeout: float = 10.0,
                content_type: str = "application/json") -> dict[str, Any]:
        if not self.up:
            raise Unreachable(f"{method} {path}: connection refused")
        with self.lock:
            items = [dict(o) for o in self.objects.get(path, {}).values()]
            return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": str(self.version)},
                    "items": items}

    def watch(self, path: str, query: Mapping[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
        since = int(query["resourceVersion"] or 0)
        until = time.monotonic() + 0.2  # short watches: the watcher resumes from the last version
        while time.monotonic() < until:
            if not self.up:
                raise Unreachable(f"WATCH {path}: connection reset")
            with self.lock:
                due = [(v, e) for p, v, e in self.events if p == path and v > since]
            for version, event in due:
                since = version
                yield event
            time.sleep(0.02)

    def close(self) -> None:
        pass


def deployment(name: str, gpus: int, replicas: int = 1, cpu: str | None = "1") -> dict[str, Any]:
    requests: dict[str, str] = {GPU.removeprefix("requests."): str(gpus)} if gpus else {}
    if cpu is not None:
        requests["cpu"] = cpu
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "labels": {"team": "a"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "app", "resources": {"requests": requests}}]}}}}


def pod(name: str, uid: str, gpus: int, scheduled: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": "5",
                         "labels": {"team": "a"}},
            "spec": {"nodeName": "node-1", "containers": [
                {"name": "app", "resources": {"requests": {"nvidia.com/gpu": str(gpus)}}}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled}]}}


def fleet_of(policy: CompiledPolicy, ledger: MemoryLedger, clusters: Mapping[str, KubeApi],
             **options: Any) -> Fleet:
    source = LimitRangeSource()  # what serve hands the engine: each member installs its own index
    controllers = {name: Controller(api, lambda: policy, ledger, cluster=name, limit_source=source, **options)
                   for name, api in clusters.items()}
    return Fleet(controllers, ledger, clock=lambda: MONDAY)


def gpus(ledger: MemoryLedger) -> int:
    return ledger.used("a").get(GPU, 0)


# ------------------------------------------------------------------- cash
def test_cash_accrues_once_per_group_over_the_pods_of_every_cluster(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False)
    fleet = fleet_of(policy, ledger, {"east": FakeCluster("east"), "west": FakeCluster("west")})
    # The same namespace/name in both clusters: two pods. east's holds 2 GPUs from Monday 00:00,
    # west's 1 GPU from 00:30.
    fleet.controllers["east"].reconciler.replace(PODS, [pod("p", "uid-east", 2, "2025-11-24T00:00:00Z")])
    fleet.controllers["west"].reconciler.replace(PODS, [pod("p", "uid-west", 1, "2025-11-24T00:30:00Z")])
    assert all(not c.keeps_cash for c in fleet.controllers.values())  # none accrues on its own
    fleet.accrue(MONDAY + HOUR)
    # east 2 GPU × 3600 s + west 1 GPU × 1800 s = 9000 GPU-seconds (2.5 GPU-hours), in nanos:
    assert ledger.cash_used("a")[GPU] == 9000 * NANO
    fleet.accrue(MONDAY + 2 * HOUR)  # one more hour of both: 3 GPU-hours more, the first never again
    assert ledger.cash_used("a")[GPU] == (9000 + 3 * HOUR) * NANO
    assert ledger.cash_state("a").last_accrual == MONDAY + 2 * HOUR


def test_one_accrual_per_controller_would_lose_the_other_clusters_pods(policy: CompiledPolicy) -> None:
    """Why the Fleet accrues: the second controller's accrual up to the same time finds nothing left to add."""
    ledger = MemoryLedger(standalone=False)
    fleet = fleet_of(policy, ledger, {"east": FakeCluster("east"), "west": FakeCluster("west")})
    fleet.controllers["east"].reconciler.replace(PODS, [pod("p", "uid-east", 2, "2025-11-24T00:00:00Z")])
    fleet.controllers["west"].reconciler.replace(PODS, [pod("p", "uid-west", 1, "2025-11-24T00:00:00Z")])
    for controller in fleet.controllers.values():
        controller.reconciler.accrue(MONDAY + HOUR)
    assert ledger.cash_used("a")[GPU] == 2 * HOUR * NANO  # west's hour is lost: 2, not 3 GPU-hours


# ---------------------------------------------------------------- health
@pytest.fixture
def clusters() -> dict[str, FakeCluster]:
    made = {"east": FakeCluster("east"), "west": FakeCluster("west")}
    made["east"].put(DEPLOYMENTS, deployment("web", 2))  # the same name in both: charged twice
    made["west"].put(DEPLOYMENTS, deployment("web", 3))
    return made


@pytest.fixture
def running(policy: CompiledPolicy, clusters: dict[str, FakeCluster]) -> Iterator[tuple[Fleet, MemoryLedger]]:
    ledger = MemoryLedger(standalone=False)
    fleet = fleet_of(policy, ledger, clusters, accrue_every=3600)
    fleet.start()
    try:
        assert fleet.wait_synced(10)
        yield fleet, ledger
    finally:
        fleet.stop()


def test_a_member_that_fails_keeps_its_usage_and_its_relist_replaces_only_its_share(
    running: tuple[Fleet, MemoryLedger], clusters: dict[str, FakeCluster]
) -> None:
    fleet, ledger = running
    wait_until(lambda: gpus(ledger) == 5 * NANO, "2 + 3 GPUs from both listings", 10)
    east, west = clusters["east"], clusters["west"]
    east.up = False
    wait_until(lambda: not fleet.clusters()["east"].reachable, "east to be reported unreachable", 10)
    report = fleet.clusters()["east"]
    assert report.last_error is not None and "connection" in report.last_error
    assert report.since is not None and report.synced
    assert fleet.clusters()["west"].reachable
    assert fleet.synced  # the others keep deciding
    # Meanwhile in east: web is deleted and api (4 GPUs) created; nobody sees it, nothing is forgotten.
    east.put(DEPLOYMENTS, deployment("web", 2), "DELETED")
    east.put(DEPLOYMENTS, deployment("api", 4))
    for controller in fleet.controllers.values():
        controller.reconciler.recompute()  # a periodic resync while east is away: east's share is kept
    assert gpus(ledger) == 5 * NANO
    assert ledger.group_usage("a").observed_by_cluster["east"][GPU] == 2 * NANO
    west.put(DEPLOYMENTS, deployment("db", 1))  # west goes on being watched
    wait_until(lambda: gpus(ledger) == 6 * NANO, "west's new Deployment", 10)
    east.up = True
    # Back: east's relist replaces east's share only (web gone, api 4), west's stays 3 + 1.
    wait_until(lambda: gpus(ledger) == 8 * NANO, "east relisted: 4 + 3 + 1 GPUs", 20)
    by_cluster = ledger.group_usage("a").observed_by_cluster
    assert (by_cluster["east"][GPU], by_cluster["west"][GPU]) == (4 * NANO, 4 * NANO)
    assert ledger.lookup(ObjectKey("apps", "Deployment", "ns", "web", "east")) is None
    assert ledger.lookup(ObjectKey("apps", "Deployment", "ns", "web", "west")) is not None
    wait_until(lambda: fleet.clusters()["east"].reachable, "east reported reachable again", 10)
    assert fleet.clusters()["east"].last_error is None


def test_limit_range_defaults_come_from_the_reviews_cluster(
    running: tuple[Fleet, MemoryLedger], clusters: dict[str, FakeCluster], policy: CompiledPolicy
) -> None:
    fleet, ledger = running
    source = fleet.controllers["east"].limit_source
    assert source is not None and source is fleet.controllers["west"].limit_source
    for name, cpu in (("east", "2"), ("west", "3")):  # each cluster defaults a container's cpu request
        clusters[name].put("/api/v1/limitranges", {
            "apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "ns"},
            "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": cpu}, "default": {"cpu": cpu}}]}})
    indexes = {name: source.of(name) for name in ("east", "west")}
    assert all(index is not None for index in indexes.values())
    wait_until(lambda: all(len(indexes[n]("ns")) == 1 for n in ("east", "west")), "both LimitRanges", 10)
    bare = deployment("bare", 0, replicas=2, cpu=None)  # no cpu request: the LimitRanger's default applies
    for name, each in (("east", 2), ("west", 3)):
        identity = ObjectKey("apps", "Deployment", "ns", "bare", name)
        decision = admit(ledger, policy, bare, "CREATE", identity=identity, limit_ranges=source.of(name))
        assert decision.allowed and decision.delta["requests.cpu"] == 2 * each * NANO  # 2 pods × the default
