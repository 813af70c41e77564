"""Leases in the kubernetes store, against a real kube-apiserver: a burst admits without a write per request.

Numbers by hand: every `web-N` Deployment runs one pod requesting 1 cpu
(10**9 nanos). Group `big` may use 1000 cpu, `mid` 20. A lease is m more of
the last admission, m the largest of 16, 4, 1 that leaves room for 4 m
(`kubestore.LEASE_SIZES`), and only in a burst: a lone admission gets none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube import deadline
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import ObjectKey, Observation
from quotalang.controller.ledger.crd import from_object, object_path
from quotalang.controller.ledger.kubestore import LEASE_WAIT, LEASE_WINDOW, TIDY_IDLE, KubernetesLedger
from quotalang.loader import load_text
from tests.controller.kube_apiserver import Cluster, apiserver, client, wipe_ledgers

__all__ = ["apiserver"]  # the session fixture, imported for pytest

CPU = 10**9
POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu   2000
}

group big in root {
  requests.cpu   1000
}

group mid in root {
  requests.cpu     20
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
    return compile_sources(load_text(POLICY, "leases.quota"))


@pytest.fixture
def apis(apiserver: Cluster) -> Iterator[list[KubeApi]]:
    wipe_ledgers(apiserver)
    made = [client(apiserver) for _ in range(3)]
    yield made
    for api in made:
        api.close()


def deployment(name: str, group: str, cpu: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"team": group}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu}}}]}}},
    }


def entries(api: KubeApi, group: str) -> dict[str, int]:
    """requests.cpu per reservation entry of the group's ledger object, in whole cpus."""
    state = from_object(api.request("GET", object_path(group)), group)
    return {name: held.usage.get("requests.cpu", 0) // CPU for name, held in state.reservations.items()}


def version(api: KubeApi, group: str) -> str:
    return str(api.request("GET", object_path(group))["metadata"]["resourceVersion"])


def test_a_burst_admits_within_its_lease_without_writing(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    assert ledger.admit(policy, deployment("web-1", "big"), "CREATE").allowed
    assert entries(apis[0], "big") == {"r0": 1}  # a lone admission: no lease
    assert ledger.admit(policy, deployment("web-2", "big"), "CREATE").allowed
    # A burst: room for 4 × 16 more, so a lease of 16 × 1 cpu beside the 2 held.
    assert entries(apis[0], "big") == {"r0": 2, "r0~lease": 16}
    written = version(apis[0], "big")
    for i in range(3, 19):  # 16 more: all within the lease
        assert ledger.admit(policy, deployment(f"web-{i}", "big"), "CREATE").allowed
    assert version(apis[0], "big") == written  # not one write
    assert ledger.stats.leased == 16
    assert ledger.used("big")["requests.cpu"] == 18 * CPU  # what the replica checks against: its own 18
    assert ledger.admit(policy, deployment("web-19", "big"), "CREATE").allowed  # the 17th: a write
    assert entries(apis[0], "big") == {"r0": 19, "r0~lease": 16}


def test_a_fold_does_not_refill_a_lease(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    for i in (1, 2):
        assert ledger.admit(policy, deployment(f"web-{i}", "big"), "CREATE").allowed  # the second leases 16
    for i in range(3, 11):  # 8 of the 16 handed out
        assert ledger.admit(policy, deployment(f"web-{i}", "big"), "CREATE").allowed
    # The leader observes 5 of them: they leave the replica's own sum, but the lease stays half used.
    ledger.observe_many([Observation(ObjectKey("apps", "Deployment", "default", f"web-{i}"), "big",
                                     {"requests.cpu": CPU}) for i in range(3, 8)])
    written = version(apis[0], "big")
    for i in range(11, 19):  # the other 8: still no write
        assert ledger.admit(policy, deployment(f"web-{i}", "big"), "CREATE").allowed
    assert version(apis[0], "big") == written
    assert ledger.admit(policy, deployment("web-19", "big"), "CREATE").allowed  # not 5 more: a write
    assert version(apis[0], "big") != written
    state = from_object(apis[0].request("GET", object_path("big")), "big")
    assert state.observed["requests.cpu"] == 5 * CPU
    assert entries(apis[0], "big") == {"r0": 19 - 5, "r0~lease": 16}


def test_another_replica_counts_a_lease_and_waits_for_its_return(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    for i in (1, 2):
        assert a.admit(policy, deployment(f"web-{i}", "mid"), "CREATE").allowed
    # 2 of 20 used; room for 4 × 4 more (not for 4 × 16): a lease of 4.
    assert entries(apis[0], "mid") == {"a": 2, "a~lease": 4}
    # b asks for 15: 2 + 4 + 15 = 21 > 20, but 2 + 15 fits — only a's lease keeps it out. It waits; a returns
    # the lease once its window is over (the runtime's tidy, every 0.1 s).
    started = time.monotonic()
    answer: list[bool] = []
    asking = threading.Thread(target=lambda: answer.append(
        b.admit(policy, deployment("huge", "mid", cpu="15"), "CREATE").allowed))
    asking.start()
    time.sleep(LEASE_WINDOW + 0.05)
    assert a.tidy() == 1
    asking.join(10)
    assert answer == [True]
    assert time.monotonic() - started < LEASE_WAIT + 1
    assert entries(apis[0], "mid") == {"a": 2, "b": 15}


def test_a_lease_never_returned_still_counts_after_the_wait(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    for i in (1, 2):
        assert a.admit(policy, deployment(f"web-{i}", "mid"), "CREATE").allowed
    # a went away holding its lease: b waits LEASE_WAIT, then denies (never over-admits).
    started = time.monotonic()
    denied = b.admit(policy, deployment("huge", "mid", cpu="15"), "CREATE")
    assert not denied.allowed
    assert "used 6 of 20" in denied.message
    assert LEASE_WAIT - 0.2 <= time.monotonic() - started < LEASE_WAIT + 2
    assert entries(apis[0], "mid") == {"a": 2, "a~lease": 4}


def test_three_replicas_holding_leases_admit_exactly_what_fits(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    """Each of three replicas admits 2 cpu of `mid` (20) in a burst and keeps a lease; then 60 concurrent 1-cpu
    requests over the three: exactly the 14 left are admitted, some within the leases (each replica's tidy
    runs as the runtime runs it).

    The leases by hand: r0 after its 2 sees 2 used, room 18 ≥ 4 × 4: 4. r1 sees 2 + 4 + its 2 = 8, room 12:
    not 16, but 4 × 1: 1. r2 sees 11, room 9: 1."""
    replicas = [KubernetesLedger(api, replica=f"r{i}") for i, api in enumerate(apis)]
    for n, ledger in enumerate(replicas):
        for i in (1, 2):
            assert ledger.admit(policy, deployment(f"warm-{n}-{i}", "mid"), "CREATE").allowed
    assert entries(apis[0], "mid") == {"r0": 2, "r0~lease": 4, "r1": 2, "r1~lease": 1, "r2": 2, "r2~lease": 1}
    stop = threading.Event()

    def tidy() -> None:
        while not stop.wait(0.1):
            for ledger in replicas:
                ledger.tidy(idle=TIDY_IDLE)

    tidier = threading.Thread(target=tidy, daemon=True)
    tidier.start()
    try:
        start = threading.Barrier(60)

        def one(i: int) -> bool:
            start.wait()
            with deadline.request_deadline(10):
                return replicas[i % 3].admit(policy, deployment(f"web-{i}", "mid"), "CREATE").allowed

        with ThreadPoolExecutor(60) as pool:
            results = list(pool.map(one, range(60)))
    finally:
        stop.set()
        tidier.join(5)
    assert results.count(True) == 14
    assert all(r.stats.leased >= 1 for r in replicas)  # their leases were in play (a batch may lease again)
    held = entries(apis[0], "mid")
    assert sum(v for k, v in held.items() if not k.endswith("~lease")) == 20
