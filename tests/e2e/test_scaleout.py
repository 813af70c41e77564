"""Several `quotalang serve --store kubernetes` replicas on one shared ledger, against a real apiserver.

Each replica is the real server as a process: `python -m server.cli serve
--store kubernetes --kubeconfig ... --lease-namespace default --insecure-http`
with `POD_NAME=r1`, `r2`, ... (its replica name and Lease identity). Every
replica admits with a compare-and-swap on the group's QuotaLedger; the one
holding the Lease runs the controller (watches, reconciliation, cash
accrual). The tests address the replicas directly over plain HTTP on
127.0.0.1 with AdmissionReviews as the apiserver sends them, `?timeout=`
included; no webhook is registered, so nothing the tests create in the
cluster is admitted by them.

Numbers by hand: group `ml` may use 5 cpu; every `web-N` runs one pod
requesting 1 cpu, so five fit. Cash: one real Pod of group `ml` holding
2 cpu, scheduled 10 minutes before the replicas start, so the leader accrues
2 cpu-seconds per second of wall time (2 × 10⁹ nano-cpu × 1 s) from the later
of (its scheduled time, this week's Monday 00:00 UTC).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from quotalang.controller.cash import period_start
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.crd import parse_time
from tests.e2e.kube_cluster import ROOT, Cluster, free_port, wait_until

POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu              100
  requests.nvidia.com/gpu    16
  cash requests.nvidia.com/gpu 1000h per week
  cash requests.cpu            1000h per week
}

group ml in root {
  requests.cpu                5
  requests.nvidia.com/gpu     8
  cash requests.nvidia.com/gpu  500h per week
  cash requests.cpu             500h per week
}

group lab in root {
  requests.cpu               50
  requests.nvidia.com/gpu     8
  cash requests.nvidia.com/gpu  500h per week
  cash requests.cpu             500h per week
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
}
"""
CPU = 10**9
LEDGERS = "/apis/quotalang.dev/v1alpha1/quotaledgers"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/default/leases/quotalang-ledger-leader"
NAMESPACE = "e2e-scaleout"  # where the cash test's pod runs
_uids = itertools.count(1)


class Replica:
    """One `quotalang serve --store kubernetes` process; `kill()` is SIGKILL (no lease release), `stop()` SIGTERM."""

    def __init__(self, cluster: Cluster, policy: Path, folder: Path, name: str, *args: str) -> None:
        self.cluster, self.policy, self.name, self.args = cluster, policy, name, args
        self.port = free_port()
        self.api_port = free_port()  # /metrics: the API port (--api-insecure: no tokens in this test)
        self.log = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quotalang.server.cli", "serve", "--policy", str(self.policy),
                 "--insecure-http", "--host", "127.0.0.1", "--port", str(self.port),
                 "--api-port", str(self.api_port), "--api-insecure",
                 "--kubeconfig", str(self.cluster.kubeconfig), "--store", "kubernetes",
                 "--lease-namespace", "default", "--log-format", "json", *self.args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "POD_NAME": self.name},
            )
        # The leader is ready once its controller has listed the cluster; a follower at once.
        wait_until(self.ready, f"replica {self.name}", 60, self.process, self.log)
        return self

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.process.wait(20)  # SIGTERM: a graceful stop (the controller's last accrual, the Lease released)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            try:
                self.kill(signal.SIGTERM)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)

    def admit(self, name: str, cpu: str = "1", group: str = "ml", timeout: str = "5s") -> dict[str, Any]:
        body = review(name, cpu, group)
        answer = httpx.post(f"http://127.0.0.1:{self.port}/validate?timeout={timeout}", json=body, timeout=15)
        assert answer.status_code == 200, answer.text  # every answer is an AdmissionReview, never a traceback
        response: dict[str, Any] = answer.json()["response"]
        return response

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0


def review(name: str, cpu: str, group: str) -> dict[str, Any]:
    obj = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": group}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu}}}]}}},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"uid-{next(_uids)}", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": name, "namespace": "default", "operation": "CREATE", "userInfo": {"username": "alice"},
        "object": obj, "oldObject": None, "dryRun": False}}


StartReplica = Callable[..., Replica]


@pytest.fixture
def replicas(cluster: Cluster, tmp_path: Path) -> Iterator[StartReplica]:
    """Start replicas on a fresh ledger (no QuotaLedgers, no Lease); all stopped after the test."""
    with cluster.http() as api:
        api.delete(LEDGERS)
        api.delete(LEASE)
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "org.quota").write_text(POLICY)
    started: list[Replica] = []

    def start(name: str, *args: str) -> Replica:
        replica = Replica(cluster, policy, tmp_path, name, *args).start()
        started.append(replica)
        return replica

    yield start
    for replica in started:
        replica.stop()


@pytest.fixture
def trainer(cluster: Cluster) -> Iterator[int]:
    """A real pod of group ml holding 2 cpu, bound to node-1, Running, scheduled 600 s ago; yields that time.

    No scheduler or kubelet runs here: the test writes what they would (the
    binding as `spec.nodeName`, then phase and `PodScheduled` through the
    status subresource). Deleted (grace 0: no kubelet will confirm) after.
    """
    cluster.ensure_namespace(NAMESPACE)
    pods = f"/api/v1/namespaces/{NAMESPACE}/pods"
    api = KubeApi.from_config(str(cluster.kubeconfig))
    try:
        api.request("POST", pods, body={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "trainer", "namespace": NAMESPACE, "labels": {"team": "ml"}},
            "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "registry.example/app:1",
                                                           "resources": {"requests": {"cpu": "2"}}}]}})
        scheduled = int(time.time()) - 600  # whole seconds: the condition's time has no fraction
        stamp = datetime.fromtimestamp(scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        api.request("PATCH", f"{pods}/trainer/status",
                    body={"status": {"phase": "Running", "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp}]}},
                    content_type="application/merge-patch+json")
        yield scheduled
    finally:
        try:
            api.request("DELETE", f"{pods}/trainer", query={"gracePeriodSeconds": "0"})
        finally:
            api.close()


def ledger(cluster: Cluster, group: str) -> dict[str, Any]:
    with cluster.http() as api:
        answer = api.get(f"{LEDGERS}/{group}")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json().get("status") or {}
    return status


def reserved(status: dict[str, Any]) -> dict[str, int]:
    """requests.cpu each webhook replica holds for its unconfirmed admissions (one entry per replica)."""
    return {name: int(item["usage"]["requests.cpu"]) for name, item in (status.get("reservations") or {}).items()}


def holder(cluster: Cluster) -> str:
    with cluster.http() as api:
        answer = api.get(LEASE)
    return str(answer.json()["spec"].get("holderIdentity") or "") if answer.status_code == 200 else ""


def test_concurrent_creates_over_three_replicas_admit_exactly_what_fits(
    cluster: Cluster, replicas: StartReplica
) -> None:
    hooks = [replicas(f"r{i}") for i in (1, 2, 3)]
    gate = threading.Barrier(30)

    def one(i: int) -> bool:
        gate.wait()
        return bool(hooks[i % 3].admit(f"web-{i}")["allowed"])

    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(one, range(30)))
    assert results.count(True) == 5  # 30 requests of 1 cpu each against 5 cpu: exactly 5
    taken = reserved(ledger(cluster, "ml"))  # per replica now: the object does not grow with admissions
    assert set(taken) <= {"r1", "r2", "r3"}
    assert sum(taken.values()) == 5 * CPU
    denied = hooks[0].admit("web-late")
    assert not denied["allowed"] and "used 5 of 5" in denied["status"]["message"]


def test_a_restarted_replica_decides_from_the_shared_ledger_at_once(cluster: Cluster, replicas: StartReplica) -> None:
    a, b = replicas("r1"), replicas("r2")
    assert b.admit("first", cpu="4")["allowed"]
    b.kill()
    b = replicas("r3")  # its successor: a new pod, a new name
    assert not b.admit("second", cpu="2")["allowed"]  # 4 + 2 > 5: it knows its predecessor's 4
    assert a.admit("third", cpu="1")["allowed"]  # 4 + 1 = 5 of 5
    assert not b.admit("fourth", cpu="1")["allowed"]  # 5 + 1 > 5: and r1's 1, written a moment ago
    assert reserved(ledger(cluster, "ml")) == {"r2": 4 * CPU, "r1": 1 * CPU}  # the dead r2's 4 until they expire


NANOS_PER_MS = 2 * CPU // 1000  # 2 cpu for 1 ms = 2 × 10⁹ nano-cpu × 0.001 s = 2,000,000 nano-cpu-seconds
ROUNDING = 3 * NANOS_PER_MS  # accrual counts whole ms (times kept in µs): a few ms of rounding at most


def test_leader_failover_within_the_lease_and_cash_never_accrued_twice(
    cluster: Cluster, replicas: StartReplica, trainer: int
) -> None:
    scheduled = trainer
    # Accrual starts at the later of (scheduled, this week's Monday 00:00 UTC): the pod was scheduled
    # 600 s before now, so unless the test runs in the first 10 minutes of a week, at `scheduled`.
    since = max(scheduled, round(period_start("week", time.time()) or scheduled))
    accrue_interval, lease = 1, 3
    args = ("--lease-duration", str(lease), "--accrue-interval", str(accrue_interval))

    def cash() -> tuple[int, float]:
        """(nano-cpu-seconds stored in ml's ledger, its lastAccrual) — checked by hand against the pod."""
        before = time.time()
        status = ledger(cluster, "ml")
        after = time.time()  # an accrual may land between `before` and the read: it is not ahead of `after`
        used = int((status.get("cash") or {}).get("requests.cpu", 0))
        last = parse_time(status["lastAccrual"]) if status.get("lastAccrual") else 0.0
        if used:
            # Exactly 2 cpu × (lastAccrual − since), to the ms: every ms accrued once. One interval
            # accrued twice would add ≥ 1 s × 2 cpu = 2 × 10⁹ (the interval is 1 s); one skipped
            # (e.g. accrued before the pod was observed) would miss as much — both far above ROUNDING.
            exact = NANOS_PER_MS * (round(last * 1000) - since * 1000)
            assert abs(used - exact) <= ROUNDING, f"cash {used} != 2 cpu × (lastAccrual − scheduled) = {exact}"
            # And against the wall clock: never ahead of now; behind by at most one accrual interval
            # (1 s) plus a takeover (the lease, 3 s) plus 3 s of slack (the follower's polling, the new
            # leader's first list and its first accrual 1 s after it starts): ≥ 2 cpu × (now − since
            # − 7 s), i.e. at most 14 cpu-seconds (14 × 10⁹) behind.
            assert used <= 2 * CPU * (after - since) + ROUNDING
            assert used >= 2 * CPU * (before - since - (accrue_interval + lease + 3))
        return used, last

    hooks = {name: replicas(name, *args) for name in ("r1", "r2")}
    wait_until(lambda: holder(cluster) in hooks, "a leader", 15)
    first = hooks[holder(cluster)]
    other = next(h for h in hooks.values() if h is not first)
    wait_until(lambda: cash()[0] > 0, "the first accrual", 15)
    # The first accrual charges the 10 minutes before the webhook started: 2 cpu × 600 s = 1,200
    # cpu-seconds (1.2 × 10¹², plus 2 × 10⁹ per second since).
    assert cash()[0] >= 1200 * CPU
    time.sleep(1.5)
    led, _ = cash()
    # A paused leader (SIGSTOP) is the hard case: it wakes up believing it still leads.
    first.kill(signal.SIGSTOP)
    paused = time.monotonic()
    wait_until(lambda: holder(cluster) == other.name, "the other replica to take over", 10)
    took = time.monotonic() - paused
    assert took < lease + 1.5, f"takeover took {took:.1f} s"  # the lease (3 s) plus polling and a request
    # The new leader lists the pod and accrues from the *stored* lastAccrual: the paused leader's
    # last interval is not accrued again, the gap since it is not lost.
    wait_until(lambda: cash()[0] > led, "the new leader's first accrual", 10)
    time.sleep(1.0)
    first.kill(signal.SIGCONT)
    time.sleep(1.5)  # the woken one steps down (renew deadline long past) and is fenced if it tries
    at, last_at = cash()
    time.sleep(3.0)
    later, last_later = cash()
    # Still growing at 2 cpu-seconds per second, under the new leader alone: over the 3 s slept,
    # about 6 cpu-seconds (exactly 2 cpu × the lastAccrual difference, checked to the ms by cash()).
    # Each lastAccrual is at most one interval (1 s) plus 0.5 s of upkeep behind its read: over 3 s
    # of wall time, lastAccrual moved ≥ 3 − 1.5 = 1.5 s (and 2 cpu × 1.5 s = 3 cpu-seconds were added).
    assert last_later - last_at >= 3.0 - accrue_interval - 0.5
    assert abs((later - at) - NANOS_PER_MS * round((last_later - last_at) * 1000)) <= ROUNDING
    assert holder(cluster) == other.name
    assert first.metric("quotalang_leader") == 0 and other.metric("quotalang_leader") == 1
    first.kill(signal.SIGKILL)  # the paused-and-woken one is done; the other stops cleanly after


def test_an_apiserver_restart_while_requests_arrive(cluster: Cluster, replicas: StartReplica) -> None:
    mode = {"r1": "deny", "r2": "allow"}
    r1 = replicas("r1", "--lease-duration", "3", "--reservation-ttl", "60")
    r2 = replicas("r2", "--lease-duration", "3", "--reservation-ttl", "60", "--failure-mode", "allow")
    answers: list[tuple[str, str, dict[str, Any]]] = []
    stop = threading.Event()

    def send() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            hook = (r1, r2)[i % 2]
            name = f"job-{i}"
            answers.append((hook.name, name, hook.admit(name, cpu="100m", group="lab", timeout="2s")))
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(1.0)
        cluster.stop_apiserver()
        time.sleep(3.0)
        cluster.start_apiserver()
        time.sleep(1.5)
    finally:
        stop.set()
        sender.join(30)
    failed = [(who, r) for who, _, r in answers if "could not decide" in str(r)]
    assert failed, "no request arrived while the apiserver was down"
    for who, response in failed:  # answered per each replica's failure mode, with the reason
        if mode[who] == "deny":
            assert not response["allowed"] and response["status"]["code"] == 500
            assert "failure mode deny" in response["status"]["message"]
        else:
            assert response["allowed"] and "failure mode allow" in response["warnings"][0]
    decided = {name for _, name, r in answers if r["allowed"] and "could not decide" not in str(r)}
    assert len(decided) >= 10  # before and after the outage
    # A replica's lease entry holds what it handed out since its last write as well as what is still free in
    # it: once the leases are returned (their window over and the replicas quiet), the sums hold every admission.
    wait_until(lambda: not any(n.endswith("~lease") for n in reserved(ledger(cluster, "lab"))),
               "the leases to be returned", 30)
    taken = reserved(ledger(cluster, "lab"))  # one sum per replica
    failed_names = {name for _, name, r in answers if "could not decide" in str(r)}
    # Every admitted request holds its reservation, once (100m each, never twice); extra ones are
    # writes whose answers were lost.
    assert len(decided) * (CPU // 10) <= sum(taken.values()) <= len(decided | failed_names) * (CPU // 10)
    # Nothing was created in the cluster, so usage converges to nothing: the leader's controller
    # (re-elected after the outage) and each replica let every reservation go once its 60 s deadline
    # passes (the restart alone takes 10-15 s here and replicas drop their own at the deadline, so a
    # shorter one could expire before the check above).
    wait_until(lambda: not ledger(cluster, "lab").get("reservations"), "the reservations to expire", 80)
    assert holder(cluster) in mode
