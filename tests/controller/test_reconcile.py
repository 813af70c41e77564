"""The reconciler: watch events and listings into the memory ledger, reservations kept, cash accrued.

Numbers by hand: a pod asks for 4 cpu; group `a` may use 40 cpu (ten pods);
a pod charges `requests.cpu` and `cpu` (4 each), `pods` and `count/pods` 1. Cash: group `a`
may spend 100 cpu-hours per week.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller import MemoryLedger, ObjectKey
from quotalang.controller.kube.watch import Gone
from quotalang.controller.reconcile import PODS, Reconciler, slim
from quotalang.loader import load_text
from tests.asks import admit

NANO = 10**9
CPU = 4 * NANO
DEPLOYMENTS = "apps/v1/deployments"
REPLICASETS = "apps/v1/replicasets"
MONDAY = 1_763_942_400.0  # 2025-11-24 00:00:00 UTC, a Monday

POLICY = """\
settings {
  group label "team"
  unlabelled allow
}

group root {
  requests.cpu 100
  pods 100
  cash requests.cpu 1000h per week
}

group a in root {
  requests.cpu 40
  pods 40
  cash requests.cpu 100h per week
}

group b in root {
  requests.cpu 40
  pods 40
  cash requests.cpu 100h per week
}

kind v1 Pod {
  pods {
    replicas 1
    template .
  }
}

kind apps/v1 Deployment {
  creates apps/v1 ReplicaSet
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
}

kind apps/v1 ReplicaSet {
  creates v1 Pod
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "reconcile.quota"))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger(standalone=False)


@pytest.fixture
def reconciler(ledger: MemoryLedger, policy: CompiledPolicy) -> Reconciler:
    return Reconciler(ledger, lambda: policy, clock=Clock(MONDAY))


TEMPLATE = {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "4"}}}]}}


def deployment(name: str, group: str | None = "a", replicas: int = 1, rv: str = "10",
               uid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": rv, "uid": uid or f"uid-{name}",
                            "labels": {} if group is None else {"team": group},
                            "managedFields": [{"manager": "kubectl"}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": replicas, "template": TEMPLATE}}


def owned(kind: str, name: str, owner_kind: str, owner: str, api_version: str = "apps/v1",
          **extra: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "11",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner,
                                              "uid": f"uid-{owner}", "controller": True}]},
            **extra}


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "ns", name)


def usage(pods: int) -> dict[str, int]:
    """What `pods` of TEMPLATE charge."""
    return {"requests.cpu": pods * CPU, "cpu": pods * CPU, "pods": pods * NANO, "count/pods": pods * NANO}


def cpu(ledger: MemoryLedger, group: str) -> int:
    return ledger.used(group).get("requests.cpu", 0)


# ---------------------------------------------------------------- usage
def test_an_observed_deployment_charges_its_group(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=3))
    usage = ledger.group_usage("a")
    assert usage.observed == {"requests.cpu": 3 * CPU, "cpu": 3 * CPU, "pods": 3 * NANO, "count/pods": 3 * NANO}
    assert usage.objects == 1
    body = ledger.lookup(key("web"))
    assert body is not None and body["spec"]["replicas"] == 3  # found for a later /scale
    assert "managedFields" not in body["metadata"]


def test_a_modification_replaces_and_a_deletion_frees(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=3))
    reconciler.apply(DEPLOYMENTS, "MODIFIED", deployment("web", replicas=5, rv="12"))
    assert cpu(ledger, "a") == 5 * CPU
    reconciler.apply(DEPLOYMENTS, "DELETED", deployment("web", replicas=5, rv="13"))
    assert cpu(ledger, "a") == 0
    assert ledger.lookup(key("web")) is None


def test_a_stale_event_never_rolls_an_object_back(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(DEPLOYMENTS, "MODIFIED", deployment("web", replicas=5, rv="20"))
    reconciler.apply(DEPLOYMENTS, "MODIFIED", deployment("web", replicas=2, rv="15"))  # from a replaced watcher
    assert cpu(ledger, "a") == 5 * CPU


def test_a_label_change_moves_usage_between_groups(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", "a", replicas=2))
    reconciler.apply(DEPLOYMENTS, "MODIFIED", deployment("web", "b", replicas=2, rv="12"))
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 2 * CPU)


def test_unlabelled_and_owned_objects_are_not_charged(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("free", group=None, replicas=2))
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=2))
    rs = owned("ReplicaSet", "web-1", "Deployment", "web", spec={"replicas": 2, "template": TEMPLATE})
    rs["metadata"]["labels"] = {"team": "a"}  # labelled too, but its Deployment already paid
    reconciler.apply(REPLICASETS, "ADDED", rs)
    assert cpu(ledger, "a") == 2 * CPU
    assert set(ledger.group_names()) == {"a"}


def test_a_cluster_reconciler_keys_every_object_by_its_cluster(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    in_a = Reconciler(ledger, lambda: policy, clock=Clock(MONDAY), cluster="a")
    in_b = Reconciler(ledger, lambda: policy, clock=Clock(MONDAY), cluster="b")
    in_a.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=2))
    in_b.replace(DEPLOYMENTS, [deployment("web", replicas=3)])  # the same ns/name in cluster b: another object
    numbers = ledger.group_usage("a")
    assert (numbers.observed["requests.cpu"], numbers.objects) == (5 * CPU, 2)
    assert ledger.lookup(ObjectKey("apps", "Deployment", "ns", "web", "b")) is not None
    assert ledger.lookup(key("web")) is None  # nothing of cluster ""
    in_b.apply(DEPLOYMENTS, "DELETED", deployment("web", replicas=3, rv="11"))
    assert cpu(ledger, "a") == 2 * CPU  # b's deletion frees b's object only
    in_b.replace(DEPLOYMENTS, [deployment("web", replicas=3, rv="12")])
    in_a.recompute()  # a's resync replaces a's share only
    in_b.recompute()
    assert ledger.group_usage("a").observed_by_cluster == {"a": usage(2), "b": usage(3)}


# ------------------------------------------------- reservations and resync
def test_an_observation_folds_the_reservation_admission_made(
    reconciler: Reconciler, ledger: MemoryLedger, policy: CompiledPolicy
) -> None:
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE").allowed
    assert ledger.group_usage("a").reserved["requests.cpu"] == 2 * CPU
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=2))
    usage = ledger.group_usage("a")
    assert (usage.observed["requests.cpu"], dict(usage.reserved)) == (2 * CPU, {})  # counted once, not twice


def test_a_resync_while_an_admission_is_unobserved_does_not_over_admit(
    reconciler: Reconciler, ledger: MemoryLedger, policy: CompiledPolicy
) -> None:
    # 6 pods observed (24 cpu); then 4 more admitted (16 cpu, 40 in all: the group is full) but the
    # watch has not shown them yet when a full resync lands with a LIST that predates them.
    reconciler.replace(DEPLOYMENTS, [deployment("old", replicas=6)])
    assert admit(ledger, policy, deployment("new", replicas=4), "CREATE").allowed
    reconciler.replace(DEPLOYMENTS, [deployment("old", replicas=6)])  # the relist: "new" is not in it
    reconciler.recompute()  # and the resync: every group summed again from what was listed
    assert cpu(ledger, "a") == 40 * NANO  # 24 observed + 16 still reserved
    late = admit(ledger, policy, deployment("late", replicas=1), "CREATE")
    assert not late.allowed  # 40 + 4 > 40: the resync did not hand the reservation's quota out again
    # Once the watch shows "new", the reservation folds into observed usage: still 40, not 56.
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("new", replicas=4, rv="20"))
    usage = ledger.group_usage("a")
    assert (usage.observed["requests.cpu"], dict(usage.reserved)) == (40 * NANO, {})


def test_an_event_between_a_recomputes_snapshot_and_its_write_is_kept(
    reconciler: Reconciler, ledger: MemoryLedger, policy: CompiledPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # recompute has summed what it has seen (no web yet); before the ledger takes the totals, the
    # watch shows web, which folds web's reservation. The older totals must not count web out.
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE").allowed
    resync = ledger.resync

    def late(observed_by_group: Any, cluster: str = "") -> None:
        reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=2, rv="20"))
        assert ledger.group_usage("a").reserved == {}  # folded: only observed holds web now
        resync(observed_by_group, cluster)

    monkeypatch.setattr(ledger, "resync", late)
    reconciler.recompute()
    assert cpu(ledger, "a") == 2 * CPU  # was 0 until the next recompute
    monkeypatch.setattr(ledger, "resync", resync)
    reconciler.recompute()
    assert cpu(ledger, "a") == 2 * CPU and len(ledger) == 1


def test_concurrent_admissions_during_resyncs_admit_exactly_what_fits(
    reconciler: Reconciler, ledger: MemoryLedger, policy: CompiledPolicy
) -> None:
    # 50 one-pod Deployments race 20 resyncs of an empty LIST; the group fits 10 pods.
    reconciler.replace(DEPLOYMENTS, [])
    start = threading.Barrier(51)
    admitted: list[bool] = []

    def create(i: int) -> None:
        start.wait()
        admitted.append(admit(ledger, policy, deployment(f"d{i}"), "CREATE").allowed)

    def resync() -> None:
        start.wait()
        for _ in range(20):
            reconciler.replace(DEPLOYMENTS, [])
            reconciler.recompute()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)] + [threading.Thread(target=resync)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert admitted.count(True) == 10
    assert cpu(ledger, "a") == 40 * NANO


def test_a_listing_forgets_what_was_deleted_while_nobody_watched(
    reconciler: Reconciler, ledger: MemoryLedger
) -> None:
    reconciler.replace(DEPLOYMENTS, [deployment("x", replicas=2), deployment("y", replicas=3)])
    assert cpu(ledger, "a") == 5 * CPU
    reconciler.replace(DEPLOYMENTS, [deployment("y", replicas=3)])
    assert cpu(ledger, "a") == 3 * CPU
    assert ledger.lookup(key("x")) is None


def test_a_listing_that_fails_midway_forgets_nothing(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.replace(DEPLOYMENTS, [deployment("x", replicas=2), deployment("y", replicas=3)])

    def pages() -> Iterator[dict[str, Any]]:
        yield deployment("x", replicas=2)
        raise Gone("the continue token expired")  # page two never came: y is not known to be gone

    with pytest.raises(Gone):
        reconciler.replace(DEPLOYMENTS, pages())
    assert cpu(ledger, "a") == 5 * CPU


def test_a_new_policy_recomputes_usage_on_the_next_listing(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    current = [policy]
    reconciler = Reconciler(ledger, lambda: current[0], clock=Clock(MONDAY))
    items = [deployment("web", replicas=2)]
    reconciler.replace(DEPLOYMENTS, items)
    assert cpu(ledger, "a") == 2 * CPU
    # The new policy charges 2 pods per Deployment replica: same objects, same versions, new usage.
    doubled = compile_sources(load_text(POLICY.replace(
        "replicas spec.replicas default 1\n    template spec.template\n  }\n  scale",
        "replicas spec.replicas default 1\n    template spec.template\n  }\n  pods {\n"
        "    replicas spec.replicas default 1\n    template spec.template\n  }\n  scale"), "reconcile.quota"))
    current[0] = doubled
    reconciler.replace(DEPLOYMENTS, items)
    assert cpu(ledger, "a") == 4 * CPU


# ------------------------------------------------------------------- cash
def pod(name: str, *, group: str | None = "a", cpu: str = "4", scheduled: str | None = "2025-11-24T00:00:00Z",
        node: str | None = "node-1", owner: tuple[str, str] | None = None, phase: str = "Running",
        finished: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": "30",
                            "labels": {} if group is None else {"team": group}}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1],
                                    "uid": f"uid-{owner[1]}", "controller": True}]
    status: dict[str, Any] = {"phase": phase, "conditions": []}
    if scheduled is not None:
        status["conditions"].append({"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled})
    if finished is not None:
        status["containerStatuses"] = [{"name": "app", "state": {"terminated": {"finishedAt": finished}}}]
    spec: dict[str, Any] = {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu}}}]}
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


HOUR = 3600


def cash(ledger: MemoryLedger, group: str) -> int:
    return ledger.cash_used(group).get("requests.cpu", 0)


def test_running_pods_accrue_cash_per_second_held(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    clock = Clock(MONDAY + 2 * HOUR)
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    reconciler.apply(PODS, "ADDED", pod("p1"))  # scheduled Monday 00:00, 4 cpu
    reconciler.apply(PODS, "ADDED", pod("p2", scheduled="2025-11-24T01:00:00Z", cpu="500m"))
    reconciler.accrue()
    # p1: 4 cpu × 2 h = 8 cpu-hours; p2: 0.5 cpu × 1 h = 0.5; 8.5 cpu-hours in nano-cpu-seconds:
    assert cash(ledger, "a") == 8_500_000_000 * HOUR
    clock.now += HOUR
    reconciler.accrue()  # one more hour of both: 4.5 cpu-hours more, never the first two again
    assert cash(ledger, "a") == 13_000_000_000 * HOUR


def test_a_pod_is_charged_to_its_owners_group_and_a_deleted_pod_stops_accruing(
    ledger: MemoryLedger, policy: CompiledPolicy
) -> None:
    clock = Clock(MONDAY + HOUR)
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", "b"))
    rs = owned("ReplicaSet", "web-1", "Deployment", "web", spec={"replicas": 1, "template": TEMPLATE})
    reconciler.apply(REPLICASETS, "ADDED", rs)
    worker = pod("web-1-x", group=None, owner=("ReplicaSet", "web-1"))  # no team label of its own
    reconciler.apply(PODS, "ADDED", worker)
    reconciler.apply(PODS, "DELETED", worker)  # gone at MONDAY + 1 h
    clock.now += 5 * HOUR
    reconciler.accrue()
    # 4 cpu from Monday 00:00 to its deletion at 01:00: 4 cpu-hours, to group b (the Deployment's).
    assert (cash(ledger, "a"), cash(ledger, "b")) == (0, 4 * NANO * HOUR)
    assert list(reconciler.runs()) == []  # fully accrued: dropped


def test_a_pod_listed_before_its_owners_is_charged_once_they_are_seen(
    ledger: MemoryLedger, policy: CompiledPolicy
) -> None:
    clock = Clock(MONDAY + HOUR)
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    worker = pod("web-1-x", group=None, owner=("ReplicaSet", "web-1"))
    reconciler.replace(PODS, [worker])  # the pod watch listed first
    assert list(reconciler.runs()) == []
    reconciler.replace(REPLICASETS, [owned("ReplicaSet", "web-1", "Deployment", "web",
                                           spec={"replicas": 1, "template": TEMPLATE})])
    assert reconciler.resolve_pods() == 0  # its ReplicaSet is known, the Deployment not yet
    reconciler.replace(DEPLOYMENTS, [deployment("web", "b")])
    assert reconciler.resolve_pods() == 1
    reconciler.accrue()
    # 4 cpu from Monday 00:00 to 01:00, to group b: 4 cpu-hours.
    assert cash(ledger, "b") == 4 * NANO * HOUR


def test_an_unchanged_relist_reads_nothing_again(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    items = [deployment("web", replicas=2)]
    reconciler.replace(DEPLOYMENTS, items)
    ledger.observe(key("web"), "a", {"requests.cpu": 99})  # if the relist re-read it, this would be undone
    reconciler.replace(DEPLOYMENTS, items)
    assert cpu(ledger, "a") == 99
    reconciler.recompute()  # the periodic recompute is what corrects any drift
    assert cpu(ledger, "a") == 2 * CPU


def test_unscheduled_pods_accrue_nothing(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    reconciler = Reconciler(ledger, lambda: policy, clock=Clock(MONDAY + HOUR))
    reconciler.apply(PODS, "ADDED", pod("pending", scheduled=None, node=None))
    reconciler.accrue()
    assert cash(ledger, "a") == 0
    assert ledger.cash_state("a").last_accrual is None  # an idle group is not written at all


def test_an_idle_group_is_still_reset_when_its_week_rolls_over(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    clock = Clock(MONDAY + 2 * HOUR)
    reconciler = Reconciler(ledger, lambda: policy, clock=clock)
    reconciler.apply(PODS, "ADDED", pod("p1", finished="2025-11-24T01:00:00Z", phase="Succeeded"))
    reconciler.accrue()
    assert cash(ledger, "a") == 4 * NANO * HOUR  # 4 cpu for the hour it ran
    clock.now += 3 * HOUR
    reconciler.accrue()  # no pods left, same week: nothing to write
    assert cash(ledger, "a") == 4 * NANO * HOUR
    clock.now += 7 * 24 * HOUR  # next Monday: the spent cash belongs to last week
    reconciler.accrue()
    assert cash(ledger, "a") == 0


def test_bare_pods_are_charged_as_workloads_too(reconciler: Reconciler, ledger: MemoryLedger) -> None:
    reconciler.apply(PODS, "ADDED", pod("bare"))
    assert cpu(ledger, "a") == CPU
    reconciler.apply(PODS, "DELETED", pod("bare"))
    assert cpu(ledger, "a") == 0


def test_slim_drops_only_managed_fields() -> None:
    obj = deployment("web")
    out = slim(obj)
    assert "managedFields" not in out["metadata"] and out["metadata"]["uid"] == "uid-web"
    assert obj["metadata"]["managedFields"]  # the original is untouched


# ---------------------------------------------------------------- owners (issue 25 #1)
def test_a_replicaset_is_owned_only_by_a_deployment_the_watches_have_seen(
    reconciler: Reconciler, ledger: MemoryLedger
) -> None:
    """By hand: a 5-pod ReplicaSet of group a (5 × 4 = 20 cpu) naming Deployment `web` as its controller is
    charged as itself while no `web` with that uid is seen, and given back once it is; one naming a
    Deployment nobody created stays charged."""
    rs = owned("ReplicaSet", "web-1", "Deployment", "web", spec={"replicas": 5, "template": TEMPLATE})
    rs["metadata"]["labels"] = {"team": "a"}
    fake = owned("ReplicaSet", "free-1", "Deployment", "nobody", spec={"replicas": 2, "template": TEMPLATE})
    fake["metadata"]["labels"] = {"team": "a"}
    reconciler.apply(REPLICASETS, "ADDED", rs)  # its Deployment's watch has not listed it yet
    reconciler.apply(REPLICASETS, "ADDED", fake)
    assert cpu(ledger, "a") == 7 * CPU  # both charged as themselves: 5 + 2 pods
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("web", replicas=5))  # uid-web, as rs names
    reconciler.resolve_pods()
    assert cpu(ledger, "a") == (5 + 2) * CPU  # the Deployment's 5 pods; rs is its own; the fake still 2
    reconciler.apply(DEPLOYMENTS, "ADDED", deployment("nobody", replicas=1, uid="uid-someone-else"))
    reconciler.resolve_pods()
    assert cpu(ledger, "a") == (5 + 1 + 2) * CPU  # another uid than the reference names: still charged
