"""One quota across two clusters (issue 18): one `quotalang serve` decides for both, against real apiservers.

Two member clusters, `a` and `b`, each its own etcd and kube-apiserver (the
suite's `Cluster`, started once for the module). The hub is `quotalang serve
--cluster a=KUBECONFIG_A --cluster b=KUBECONFIG_B` over TLS on 127.0.0.1, in
three shapes (a module-scoped fixture, one shape at a time):

* `memory`: one process, `--store memory`;
* `kubernetes-1`, `kubernetes-2`: one or two replicas, `--store kubernetes
  --ledger-cluster a --lease-namespace default`, `POD_NAME` r0, r1: the
  QuotaLedgers and the Lease live in member `a`.

Each member registers its own ValidatingWebhookConfiguration with a `url`
clientConfig: `a` calls `https://127.0.0.1:PORT/validate/a` of replica r0,
`b` calls `/validate/b` of the last replica (r1 with two, so that each
replica decides for one member and both write the same QuotaLedgers). The
hub's certificate is signed by member a's CA, which b's configuration trusts
through its caBundle. Every create goes to a member's apiserver, which calls
the hub; no kube-controller-manager runs, so a Deployment makes no pods and
what is charged is exactly what the tests create.

Numbers by hand: every group but `spend` (the cash test's) sits in `fleet`
(100 cpu) with its own requests.cpu; a Deployment of `replicas` × one container requesting `cpu`
charges replicas × cpu. Cash: see the cash test.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from quotalang.compiler import compile_policy
from quotalang.controller.cash import period_start
from quotalang.quantity import parse_quantity
from quotalang.server.manifests import webhook_rules
from tests.e2e.conftest import require_kube
from tests.e2e.kube_cluster import Cluster, Webhook, free_port, wait_until

NAMESPACE = "mc"
CPU = 10**9  # nano-cpu in one cpu
LEDGERS = "/apis/quotalang.dev/v1alpha1/quotaledgers"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/quotalang-ledger-leader"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
WEBHOOK = "quotalang-mc"
POLICY = """\
import "quotalang:policies"

settings {
  group label  "team"
}

group fleet {
  requests.cpu  100
}

group race in fleet {
  requests.cpu  5
}

group freed in fleet {
  requests.cpu  3
}

group twice in fleet {
  requests.cpu  4
}

group outage in fleet {
  requests.cpu  6
}

group spend {
  requests.cpu  10
  cash requests.cpu  100h per week
}
"""
SHAPES = ["memory", "kubernetes-1", "kubernetes-2"]
_names = itertools.count(1)


def deployment(name: str, team: str, cpu: str = "1", replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"team": team}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                         "resources": {"requests": {"cpu": cpu}}}]},
            },
        },
    }


def create(member: Cluster, obj: dict[str, Any]) -> httpx.Response:
    """POST `obj` to the member's apiserver (which calls the hub): 201, or 403 with the hub's denial."""
    with member.http(timeout=30) as api:
        return api.post(DEPLOYMENTS if obj["kind"] == "Deployment" else PODS, json=obj)


def created(answer: httpx.Response) -> bool:
    assert answer.status_code in (201, 403), answer.text  # a webhook that failed would be a 500
    if answer.status_code == 403:
        assert "denied the request" in answer.text, answer.text  # the hub's decision, not RBAC
    return answer.status_code == 201


def until_webhook(member: Cluster) -> None:
    """Until the member's apiserver calls the hub: a dry run for a group that does not exist is denied.

    Through `member.http()` (the apiserver's current port), and needed after
    every apiserver start: its webhook configurations load a moment after
    /readyz.
    """
    def denied() -> bool:
        with member.http() as api:
            answer = api.post(DEPLOYMENTS, params={"dryRun": "All"}, json=deployment("probe", "no-such-group"))
        return answer.status_code == 403 and "denied the request" in answer.text

    wait_until(denied, "the member's apiserver to call the hub", 30)


def delete(member: Cluster, name: str) -> None:
    with member.http() as api:
        answer = api.delete(f"{DEPLOYMENTS}/{name}")
    assert answer.status_code == 200, answer.text


def hand_usage(member: Cluster, team: str) -> int:
    """nano-cpu the member's Deployments of `team` hold, by hand: replicas × the one container's cpu."""
    with member.http() as api:
        answer = api.get(DEPLOYMENTS, params={"labelSelector": f"team={team}"})
    answer.raise_for_status()
    total = 0
    for item in answer.json()["items"]:
        container = item["spec"]["template"]["spec"]["containers"][0]
        total += item["spec"]["replicas"] * parse_quantity(container["resources"]["requests"]["cpu"]).nanos
    return total


# ------------------------------------------------------------------ the members
@dataclass
class Members:
    a: Cluster
    b: Cluster

    def items(self) -> list[tuple[str, Cluster]]:
        return [("a", self.a), ("b", self.b)]


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Members]:
    """Two clusters, each its own etcd and apiserver, started side by side; namespace `mc` in both."""
    folder = require_kube()
    root = tmp_path_factory.mktemp("multicluster")
    both = Members(Cluster(folder, root / "a"), Cluster(folder, root / "b"))
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(Cluster.start, (both.a, both.b)))
        for _, member in both.items():
            member.ensure_namespace(NAMESPACE)
        yield both
    finally:
        both.a.stop()
        both.b.stop()


@pytest.fixture(autouse=True)
def clean(members: Members) -> Iterator[None]:
    """After each test: no Deployments or pods left in either member (a test's groups are its own)."""
    yield
    for _, member in members.items():
        with member.http() as api:
            api.delete(DEPLOYMENTS)
            api.delete(PODS, params={"gracePeriodSeconds": "0"})  # no kubelet confirms a pod's end


# ------------------------------------------------------------------ the hub
@dataclass
class Hub:
    shape: str
    replicas: list[Webhook]
    members: Members

    def group(self, name: str) -> dict[str, Any]:
        return self.replicas[0].group(name)

    def cpu(self, group: str) -> tuple[int, int]:
        """(used, reserved) requests.cpu of `group` in nano-cpu, as /api/groups shows it."""
        row = next(r for r in self.group(group)["limits"] if r["key"] == "requests.cpu")
        return parse_quantity(row["used"]).nanos, parse_quantity(row["reserved"]).nanos

    def shares(self, group: str) -> dict[str, int]:
        """Observed requests.cpu per cluster (nano-cpu, clusters holding some), as /api/groups shows it."""
        row = next(r for r in self.group(group)["limits"] if r["key"] == "requests.cpu")
        shares = {cluster: parse_quantity(text).nanos for cluster, text in row["clusters"].items()}
        assert parse_quantity(row["observed"]).nanos == sum(shares.values())  # the total is their sum
        return {cluster: nanos for cluster, nanos in shares.items() if nanos}

    def ledger_shares(self, group: str) -> dict[str, int]:
        """The same from the group's QuotaLedger in the ledger cluster (the kubernetes store)."""
        with self.members.a.http() as api:
            answer = api.get(f"{LEDGERS}/{group}")
        assert answer.status_code == 200, answer.text
        status = answer.json().get("status") or {}
        return {cluster: int(usage.get("requests.cpu", 0))
                for cluster, usage in (status.get("observedByCluster") or {}).items()
                if int(usage.get("requests.cpu", 0))}

    def settled(self, group: str, shares: dict[str, int]) -> None:
        """Until every admission of `group` is observed and its per-cluster usage is `shares`."""
        total = sum(shares.values())

        def done() -> bool:
            return self.cpu(group) == (total, 0) and self.shares(group) == shares

        try:
            wait_until(done, f"{group} to settle at {shares}", 20)
        except RuntimeError as exc:  # say what it settled at instead
            ledger = None
            if self.shape != "memory":
                with self.members.a.http() as api:
                    ledger = api.get(f"{LEDGERS}/{group}").json().get("status")
            raise AssertionError(f"{exc}: (used, reserved) {self.cpu(group)}, shares {self.shares(group)}, "
                                 f"ledger {ledger}") from None
        if self.shape != "memory":
            assert self.ledger_shares(group) == shares

    def readyz(self) -> dict[str, Any]:
        """The leader's /readyz, with a report per cluster."""
        with self.replicas[0].http() as client:
            answer = client.get("/readyz")
        assert answer.status_code == 200, answer.text  # an unreachable member never makes the hub unready
        body: dict[str, Any] = answer.json()
        return body

    def metric(self, name: str, **labels: str) -> float:
        """One sample from the leader's /metrics (r0 is the first replica started: it takes the Lease)."""
        with self.replicas[0].http(api=True) as client:
            text = client.get("/metrics").text
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in text.splitlines():
            if line.startswith(name + "{") and all(w in line for w in wanted):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"no {name}{labels} in /metrics")


def cluster_args(members: Members) -> tuple[str, ...]:
    return tuple(arg for name, member in members.items() for arg in ("--cluster", f"{name}={member.kubeconfig}"))


def write_policy(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "org.quota").write_text(POLICY)
    return folder


@pytest.fixture(scope="module", params=SHAPES)
def hub(request: pytest.FixtureRequest, members: Members, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The hub in one shape, registered with both members; stopped and unregistered after the shape's tests."""
    shape: str = request.param
    folder = tmp_path_factory.mktemp(f"hub-{shape}")
    policy = write_policy(folder / "policy")
    args = cluster_args(members)
    if shape == "memory":
        args += ("--store", "memory")
        count = 1
    else:
        with members.a.http() as api:  # a fresh ledger: no QuotaLedgers, no Lease (404 before the CRD exists)
            api.delete(LEDGERS)
            api.delete(LEASE)
        args += ("--store", "kubernetes", "--ledger-cluster", "a", "--lease-namespace", "default")
        count = int(shape.rsplit("-", 1)[1])
    started = Hub(shape, [], members)
    try:
        for i in range(count):  # one at a time: r0 installs the CRD and takes the Lease
            replica = Webhook(members.a, policy, folder / f"r{i}", args, env={"POD_NAME": f"r{i}"})
            started.replicas.append(replica)
            replica.start()
        rules = webhook_rules(compile_policy(str(policy)))
        for index, (name, member) in enumerate(members.items()):
            replica = started.replicas[min(index, count - 1)]
            replica.register(rules, name=WEBHOOK, on=member, route=f"/validate/{name}")
        for _, member in members.items():
            until_webhook(member)
        yield started
    finally:
        for _, member in members.items():
            if member.running:
                member.kubectl("delete", "validatingwebhookconfiguration", WEBHOOK, "--ignore-not-found")
        for replica in started.replicas:
            replica.stop()


# ------------------------------------------------------------------ the tests
def test_concurrent_creates_in_both_clusters_admit_exactly_what_fits(hub: Hub) -> None:
    """16 Deployments of 1 cpu, 8 through each member at once, against race's 5 cpu: exactly 5 land."""
    gate = threading.Barrier(16)
    members = dict(hub.members.items())

    def one(i: int) -> tuple[str, bool]:
        cluster = "ab"[i % 2]
        obj = deployment(f"race-{i}", "race")
        gate.wait()
        return cluster, created(create(members[cluster], obj))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    admitted = [cluster for cluster, ok in results if ok]
    assert len(admitted) == 5, results
    split = {c: admitted.count(c) * CPU for c in "ab"}
    assert {c: hand_usage(members[c], "race") for c in "ab"} == split  # what each member holds
    hub.settled("race", {c: n for c, n in split.items() if n})  # observed from both watches, per cluster
    denied = create(hub.members.b, deployment("race-late", "race"))
    assert not created(denied) and "used 5 of 5, 0 free" in denied.text


def test_a_deletion_in_one_cluster_frees_quota_the_other_can_use(hub: Hub) -> None:
    a, b = hub.members.a, hub.members.b
    assert created(create(a, deployment("freed-a", "freed", cpu="2")))
    assert created(create(b, deployment("freed-b", "freed", cpu="1")))  # 2 + 1 = 3 of 3
    denied = create(a, deployment("freed-more", "freed"))
    assert not created(denied) and "used 3 of 3, 0 free" in denied.text
    hub.settled("freed", {"a": 2 * CPU, "b": CPU})
    delete(b, "freed-b")
    hub.settled("freed", {"a": 2 * CPU})  # b's watch saw the deletion
    assert created(create(a, deployment("freed-more", "freed")))  # 2 + 1 = 3 of 3: b's 1 cpu, used in a


def test_the_same_name_in_both_clusters_is_charged_twice(hub: Hub) -> None:
    a, b = hub.members.a, hub.members.b
    # mc/web in a and mc/web in b are two workloads: 2 × 1 cpu each, 4 of 4. Were the cluster not part
    # of the identity, b's create would replace a's pending admission (or hold a reservation no watch
    # confirms: the group never settles), and the watches' observations would fold into one.
    assert created(create(a, deployment("web", "twice", replicas=2)))
    assert created(create(b, deployment("web", "twice", replicas=2)))
    hub.settled("twice", {"a": 2 * CPU, "b": 2 * CPU})
    denied = create(a, deployment("web-2", "twice"))
    assert not created(denied) and "used 4 of 4, 0 free" in denied.text
    delete(a, "web")
    hub.settled("twice", {"b": 2 * CPU})  # a's web went; b's, of the same name, is still charged
    assert created(create(a, deployment("web-2", "twice", replicas=2)))  # 2 + 2 = 4 of 4


@contextmanager
def elsewhere(member: Cluster) -> Iterator[None]:
    """The member's apiserver on another port for a while (same etcd), out of the hub's sight.

    The hub's kubeconfig names the usual port, so it cannot watch; the
    member's webhook configuration still calls the hub (a one-way partition).
    The tests reach it through `member.http()`, which follows `member.port`.
    """
    usual = member.port
    member.port = free_port()
    member.start_apiserver()
    try:
        until_webhook(member)
        yield
    finally:
        member.stop_apiserver()
        member.port = usual


@pytest.mark.parametrize("hub", ["kubernetes-1"], indirect=True)
def test_a_member_down_keeps_its_usage_charged_and_is_relisted_when_back(hub: Hub) -> None:
    a, b = hub.members.a, hub.members.b
    assert created(create(a, deployment("out-a", "outage", cpu="1")))
    assert created(create(b, deployment("out-b", "outage", cpu="2")))
    assert created(create(b, deployment("out-gone", "outage", cpu="1")))
    hub.settled("outage", {"a": CPU, "b": 3 * CPU})
    assert hub.metric("quotalang_cluster_reachable", cluster="b") == 1
    b.stop_apiserver()
    try:
        wait_until(lambda: hub.metric("quotalang_cluster_reachable", cluster="b") == 0, "b reported unreachable", 30)
        report = hub.readyz()["clusters"]  # the hub stays ready: a keeps being decided
        assert report["a"]["reachable"] and not report["b"]["reachable"] and report["b"]["last_error"]
        # Decisions for a go on, against b's last observed 3 cpu: 1 + 3 + 2 = 6 of 6, then nothing fits.
        assert created(create(a, deployment("out-a2", "outage", cpu="2")))
        denied = create(a, deployment("out-a3", "outage", cpu="1"))
        assert not created(denied) and "used 6 of 6, 0 free" in denied.text
        hub.settled("outage", {"a": 3 * CPU, "b": 3 * CPU})  # b's share kept: never under-counted
        with elsewhere(b):
            # Changes the hub cannot watch: out-gone deleted (a DELETE is not sent to the webhook). b's
            # create is still decided by the hub, which keeps charging out-gone: denied, 6 of 6.
            delete(b, "out-gone")
            denied = create(b, deployment("out-b2", "outage", cpu="1"))
            assert not created(denied) and "used 6 of 6, 0 free" in denied.text
            assert hub.metric("quotalang_cluster_reachable", cluster="b") == 0
    finally:
        if not b.running:
            b.start_apiserver()  # the usual port, the same etcd
    until_webhook(b)
    wait_until(lambda: hub.metric("quotalang_cluster_reachable", cluster="b") == 1, "b reachable again", 60)
    assert hub.readyz()["clusters"]["b"]["reachable"]
    # Relisted: b's share is what b holds now (out-b's 2 cpu), a's is untouched.
    hub.settled("outage", {"a": 3 * CPU, "b": 2 * CPU})
    assert hand_usage(b, "outage") == 2 * CPU and hand_usage(a, "outage") == 3 * CPU
    assert created(create(b, deployment("out-b2", "outage", cpu="1")))  # 3 + 2 + 1 = 6 of 6


def _pod(name: str, cpu: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"team": "spend"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example/app:1",
                                                           "resources": {"requests": {"cpu": cpu}}}]}}


def run_pod(member: Cluster, name: str, cpu: str, scheduled: int) -> None:
    """A pod bound to node-1 and Running since `scheduled` (what the scheduler and kubelet would write)."""
    assert created(create(member, _pod(name, cpu)))
    stamp = datetime.fromtimestamp(scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    with member.http() as api:
        answer = api.patch(f"{PODS}/{name}/status", headers={"content-type": "application/merge-patch+json"},
                           json={"status": {"phase": "Running", "conditions": [
                               {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp}]}})
    assert answer.status_code == 200, answer.text


def test_cash_from_pods_in_both_clusters_adds_up(members: Members, tmp_path: Path) -> None:
    """A pod of 2 cpu in a since 900 s, one of 1 cpu in b since 300 s: 2 × 900 + 1 × 300 = 2,100 cpu-seconds.

    A hub of its own (memory store, not registered: it only watches) starts
    after both pods run, as on clusters where work ran before quotalang came;
    its first accrual must charge both pods from their scheduled times, and
    then 3 cpu-seconds per second. One cluster's pods alone would read about
    1,800 or 300; an accrual per cluster over one group would lose or double
    one of them.
    """
    now = int(time.time())
    scheduled = {"a": now - 900, "b": now - 300}
    run_pod(members.a, "trainer", "2", scheduled["a"])
    run_pod(members.b, "trainer", "1", scheduled["b"])  # the same name in both: two pods
    spender = Webhook(members.a, write_policy(tmp_path / "policy"), tmp_path / "spender",
                      (*cluster_args(members), "--store", "memory", "--accrue-interval", "1"))
    spender.start()  # ready once both clusters are listed
    hub = Hub("memory", [spender], members)
    try:
        def expected(at: float) -> float:
            """cpu-seconds by `at`: each pod's cpu × the time since the later of its start and Monday 00:00 UTC."""
            week = period_start("week", at) or 0.0
            return 2 * (at - max(scheduled["a"], week)) + 1 * (at - max(scheduled["b"], week))

        def cpu_seconds() -> float:
            return hub.metric("quotalang_cash_used_seconds", group="spend")

        wait_until(lambda: cpu_seconds() > 0, "the first accrual", 15)
        # Accrual runs every second: at most ~2 s (6 cpu-seconds) behind the clock, never ahead.
        first = cpu_seconds()
        assert expected(time.time() - 3) <= first <= expected(time.time())
        time.sleep(2.5)
        later = cpu_seconds()
        assert expected(time.time() - 3) <= later <= expected(time.time())
        assert 3 * 0.5 <= later - first <= 3 * 5.5  # 3 cpu-seconds a second, once, over ~2.5 s
    finally:
        spender.stop()
