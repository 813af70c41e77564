"""Lease leader election against a real kube-apiserver, with injected clocks (no sleeps) and then real time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from quotalang.controller.kube.api import KubeApi
from quotalang.controller.kube.election import LeaderElector
from tests.controller.kube_apiserver import Cluster, apiserver, client

__all__ = ["apiserver"]


class Clock:
    """One fake monotonic clock per replica: expiry is measured on the follower's own clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api(apiserver: Cluster) -> Iterator[KubeApi]:
    made = client(apiserver)
    yield made
    made.close()


def elector(api: KubeApi, name: str, lease: str, clock: Clock, events: list[str] | None = None) -> LeaderElector:
    log = events if events is not None else []
    return LeaderElector(
        api, namespace="default", identity=name, name=lease, lease_duration=15, monotonic=clock,
        on_started=lambda epoch: log.append(f"{name} started {epoch}"),
        on_stopped=lambda: log.append(f"{name} stopped"),
    )


def test_one_leader_and_takeover_only_after_the_lease_expires(api: KubeApi) -> None:
    events: list[str] = []
    ca, cb = Clock(), Clock()
    a, b = elector(api, "a", "t1", ca, events), elector(api, "b", "t1", cb, events)
    assert a.step() and a.is_leader
    first = a.epoch()
    assert first is not None and events == [f"a started {first}"]
    assert not b.step() and b.holder() == "a"
    cb.now += 14  # a stops renewing (killed); 14 s on b's clock: not yet
    assert not b.step()
    cb.now += 1.5
    assert b.step() and b.is_leader
    second = b.epoch()
    assert second is not None and second > first  # the fencing token grows
    lease = api.request("GET", "/apis/coordination.k8s.io/v1/namespaces/default/leases/t1")["spec"]
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1
    # The old leader, waking up: its own clock says it has not renewed for the renew deadline.
    ca.now += 11
    assert not a.is_leader and a.epoch() is None
    assert not a.step()
    assert events[-2:] == [f"b started {second}", "a stopped"]


def test_a_renewing_leader_keeps_the_lease(api: KubeApi) -> None:
    ca, cb = Clock(), Clock()
    a, b = elector(api, "a", "t2", ca), elector(api, "b", "t2", cb)
    assert a.step()
    for _ in range(6):  # 30 s of renewals every 5 s: b never sees the record stand still for 15 s
        ca.now += 5
        cb.now += 5
        assert a.step()
        assert not b.step()
    assert a.transitions == 1  # renewals are not new acquisitions


def test_a_released_lease_is_taken_at_once(api: KubeApi) -> None:
    events: list[str] = []
    ca, cb = Clock(), Clock()
    a, b = elector(api, "a", "t3", ca, events), elector(api, "b", "t3", cb, events)
    assert a.step()
    assert not b.step()
    assert a.release()
    assert not a.is_leader and "a stopped" in events
    assert b.step()  # no waiting for the lease to run out


def test_two_candidates_at_once_one_wins(api: KubeApi) -> None:
    clocks = [Clock() for _ in range(3)]
    candidates = [elector(client_api, f"c{i}", "t4", clocks[i]) for i, client_api in enumerate([api] * 3)]
    results = [c.step() for c in candidates]
    assert results.count(True) == 1


def test_failover_in_real_time_within_the_lease(apiserver: Cluster) -> None:
    apis = [client(apiserver), client(apiserver)]
    lease = 2.0
    a = LeaderElector(apis[0], namespace="default", identity="a", name="t5", lease_duration=lease,
                      retry_period=0.2)
    b = LeaderElector(apis[1], namespace="default", identity="b", name="t5", lease_duration=lease,
                      retry_period=0.2)
    try:
        a.start()
        while not a.is_leader:
            time.sleep(0.05)
        b.start()
        time.sleep(1.0)
        assert a.is_leader and not b.is_leader
        killed = time.monotonic()
        a.stop(release=False)  # as if killed: no release
        while not b.is_leader:
            assert time.monotonic() - killed < lease + 1.0, "b did not take over"
            time.sleep(0.02)
        took = time.monotonic() - killed
        assert took <= lease + 2 * 0.2 + 0.3  # lease + retry period of b's polling, plus a request
    finally:
        b.stop()
        a.stop()
        for made in apis:
            made.close()
