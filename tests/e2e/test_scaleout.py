"""Several webhook replicas on one shared ledger (the kubernetes store) against a real apiserver.

Replicas are separate processes (`scaleout_replica.py`: `create_app` over
`server.stores.kubernetes_store`), addressed directly with AdmissionReviews
as the apiserver sends them, `?timeout=` included. Numbers by hand: group
`ml` may use 5 cpu; every `web-N` runs one pod requesting 1 cpu, so five fit.
Cash: the leader accrues 1 GPU per second (1000 nano-GPU per microsecond)
from the stored last accrual time, so at any moment the stored cash must be
exactly 1000 × (lastAccrual − periodStart in µs): an interval accrued twice
would show as more.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from kube_cluster import ROOT, Cluster, free_port, wait_until

POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu              100
  requests.nvidia.com/gpu    16
  cash requests.nvidia.com/gpu 1000h per week
}

group ml in root {
  requests.cpu                5
  requests.nvidia.com/gpu     8
  cash requests.nvidia.com/gpu  500h per week
}

group lab in root {
  requests.cpu               50
  requests.nvidia.com/gpu     8
  cash requests.nvidia.com/gpu  500h per week
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
_uids = itertools.count(1)


class Replica:
    """One replica process; `kill()` is SIGKILL (no lease release), `stop()` a clean SIGTERM."""

    def __init__(self, cluster: Cluster, policy: Path, folder: Path, name: str, *args: str) -> None:
        self.cluster, self.policy, self.name, self.args = cluster, policy, name, args
        self.port = free_port()
        self.log = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Replica:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).with_name("scaleout_replica.py")), "--policy",
                 str(self.policy), "--port", str(self.port), "--kubeconfig", str(self.cluster.kubeconfig),
                 "--replica", self.name, *self.args],
                stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
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
            self.process.wait(15)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.kill(signal.SIGTERM)

    def admit(self, name: str, cpu: str = "1", group: str = "ml", timeout: str = "5s") -> dict[str, Any]:
        body = review(name, cpu, group)
        answer = httpx.post(f"http://127.0.0.1:{self.port}/validate?timeout={timeout}", json=body, timeout=15)
        assert answer.status_code == 200, answer.text  # every answer is an AdmissionReview, never a traceback
        response: dict[str, Any] = answer.json()["response"]
        return response

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
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


def ledger(cluster: Cluster, group: str) -> dict[str, Any]:
    with cluster.http() as api:
        answer = api.get(f"{LEDGERS}/{group}")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json().get("status") or {}
    return status


def reserved(status: dict[str, Any]) -> dict[str, int]:
    return {name.rsplit("/", 1)[1]: int(item["usage"]["requests.cpu"])
            for name, item in (status.get("reservations") or {}).items()}


def holder(cluster: Cluster) -> str:
    with cluster.http() as api:
        answer = api.get(LEASE)
    return str(answer.json()["spec"].get("holderIdentity") or "") if answer.status_code == 200 else ""


def micros(text: str) -> int:
    from controller.ledger_crd import parse_time

    return round(parse_time(text) * 1_000_000)


def test_concurrent_creates_over_three_replicas_admit_exactly_what_fits(
    cluster: Cluster, replicas: StartReplica
) -> None:
    hooks = [replicas(f"r{i}") for i in range(3)]
    gate = threading.Barrier(30)

    def one(i: int) -> bool:
        gate.wait()
        return bool(hooks[i % 3].admit(f"web-{i}")["allowed"])

    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(one, range(30)))
    assert results.count(True) == 5
    taken = reserved(ledger(cluster, "ml"))
    assert sorted(taken) == sorted(f"web-{i}" for i, ok in enumerate(results) if ok)
    assert sum(taken.values()) == 5 * CPU
    denied = hooks[0].admit("web-late")
    assert not denied["allowed"] and "used 5 of 5" in denied["status"]["message"]


def test_a_restarted_replica_decides_from_the_shared_ledger_at_once(cluster: Cluster, replicas: StartReplica) -> None:
    a, b = replicas("a"), replicas("b")
    assert b.admit("first", cpu="4")["allowed"]
    b.kill()
    b = replicas("b-again")
    assert not b.admit("second", cpu="2")["allowed"]  # 4 + 2 > 5: it knows a's... its predecessor's 4
    assert a.admit("third", cpu="1")["allowed"]
    assert not b.admit("fourth", cpu="1")["allowed"]  # and a's 1, written a moment ago
    assert reserved(ledger(cluster, "ml")) == {"first": 4 * CPU, "third": 1 * CPU}


def test_leader_failover_within_the_lease_and_cash_never_accrued_twice(
    cluster: Cluster, replicas: StartReplica
) -> None:
    args = ("--lease-duration", "3", "--cash", "ml:requests.nvidia.com/gpu:1000000000", "--tick", "0.2")
    hooks = {name: replicas(name, *args) for name in ("a", "b")}
    wait_until(lambda: holder(cluster) in hooks, "a leader", 15)
    first = hooks[holder(cluster)]
    other = next(h for h in hooks.values() if h is not first)
    time.sleep(1.5)
    # A paused leader (SIGSTOP) is the hard case: it wakes up believing it still leads.
    first.kill(signal.SIGSTOP)
    paused = time.monotonic()
    wait_until(lambda: holder(cluster) == other.name, "the other replica to take over", 10)
    took = time.monotonic() - paused
    assert took < 3 + 1.5, f"takeover took {took:.1f} s"  # the lease (3 s) plus polling and a request
    time.sleep(1.0)
    first.kill(signal.SIGCONT)
    time.sleep(1.5)  # the woken one steps down (renew deadline long past) and is fenced if it tries
    status = ledger(cluster, "ml")
    cash = int(status["cash"]["requests.nvidia.com/gpu"])
    span = micros(status["lastAccrual"]) - micros(status["periodStart"])
    assert cash == 1000 * span  # every microsecond accrued exactly once, across the failover
    assert span > 2_500_000  # and accrual went on after it (≥ 1.5 s before, ≥ 1 s after)
    assert holder(cluster) == other.name
    assert first.metric("quotalang_leader") == 0 and other.metric("quotalang_leader") == 1


def test_an_apiserver_restart_while_requests_arrive(cluster: Cluster, replicas: StartReplica) -> None:
    deny = replicas("deny", "--lease-duration", "3", "--reservation-ttl", "30")
    allow = replicas("allow", "--lease-duration", "3", "--reservation-ttl", "30", "--failure-mode", "allow")
    answers: list[tuple[str, str, dict[str, Any]]] = []
    stop = threading.Event()

    def send() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            hook = (deny, allow)[i % 2]
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
        if who == "deny":
            assert not response["allowed"] and response["status"]["code"] == 500
            assert "failure mode deny" in response["status"]["message"]
        else:
            assert response["allowed"] and "failure mode allow" in response["warnings"][0]
    decided = {name for _, name, r in answers if r["allowed"] and "could not decide" not in str(r)}
    assert len(decided) >= 10  # before and after the outage
    taken = reserved(ledger(cluster, "lab"))
    assert decided <= set(taken)  # every admitted request holds its reservation...
    assert set(taken.values()) == {CPU // 10}  # ...once: 100m each, never twice
    failed_names = {name for _, name, r in answers if "could not decide" in str(r)}
    assert set(taken) - decided <= failed_names  # extra ones: writes whose answers were lost
    # Nothing was created in the cluster, so usage converges to nothing: the leader (re-elected
    # after the outage) expires every reservation once its 30 s deadline passes (the
    # restart alone takes 10-15 s here, so a shorter one would expire before the check above).
    wait_until(lambda: not ledger(cluster, "lab").get("reservations"), "the reservations to expire", 45)
    assert holder(cluster) in ("deny", "allow")
