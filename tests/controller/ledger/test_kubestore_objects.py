"""KubernetesLedger.objects_of against a real kube-apiserver: the leader lists a group's workloads, a follower
says it cannot (None), never an empty list that reads as "no workloads"."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from tests.controller.kube_apiserver import Cluster, apiserver, client, wipe_ledgers

__all__ = ["apiserver"]

CPU = 10**9


@pytest.fixture
def api(apiserver: Cluster) -> Iterator[KubeApi]:
    wipe_ledgers(apiserver)
    made = client(apiserver)
    yield made
    made.close()


def test_the_leader_lists_a_groups_workloads_and_a_follower_cannot(api: KubeApi) -> None:
    leading: list[int | None] = [1]
    ledger = KubernetesLedger(api, replica="a", fence=lambda: leading[0])
    web, job = ObjectKey("apps", "Deployment", "default", "web"), ObjectKey("batch", "Job", "default", "train")
    ledger.observe(web, "ml", {"requests.cpu": 2 * CPU})
    ledger.observe(job, "lab", {"requests.cpu": CPU})
    ledger.observe(web, "ml", {"requests.cpu": 3 * CPU})  # grown: the listing shows what it holds now
    assert ledger.objects_of("ml") == [(web, {"requests.cpu": 3 * CPU})]
    assert ledger.objects_of("lab") == [(job, {"requests.cpu": CPU})]
    ledger.forget(job)
    assert ledger.objects_of("lab") == []
    leading[0] = None  # lost the Lease: its index is no longer kept up to date
    assert ledger.objects_of("ml") is None
