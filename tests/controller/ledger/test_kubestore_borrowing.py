"""Borrowing across replicas of the kubernetes store, against a real kube-apiserver (issue 29).

By hand (cpu): root 40 { pool 16 { left 6 borrow 5, right 6 borrow 5 } }. pool's own part is
16 - 6 - 6 = 4 and nothing else lends to it, so with nothing used T0(pool) = 4, and pool neither lends
nor borrows: its floor is 0. left and right lend 0: their slack is T0 6 - min(0, 6) = 6, floor -5.
Each sibling first runs 6 (its whole guarantee: no draw). Then every further cpu of theirs draws 1 on
pool, and pool admits draws while 4 - registered - 1 >= 0: exactly 4 of them, whichever sibling and
replica ask (each sibling's own borrow 5 would allow 5: the parent's room is what binds).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube import deadline
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.crd import from_object, object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.loader import load_text
from tests.asks import admit
from tests.controller.kube_apiserver import apiserver
from tests.controller.ledger.kubernetes.rig import CPU, POLICY, deployment
from tests.controller.ledger.test_kubestore_leases import apis, entries

__all__ = ["apis", "apiserver"]  # the fixtures, imported for pytest

BORROWING = POLICY.split("group root {")[0] + """group root {
  requests.cpu 40
}

group pool in root {
  requests.cpu 16
}

group left in pool {
  requests.cpu 6 borrow 5
}

group right in pool {
  requests.cpu 6 borrow 5
}

""" + "kind apps/v1" + POLICY.split("kind apps/v1")[1]


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(BORROWING, "borrowing.quota"))


def test_ten_requests_of_two_siblings_on_three_replicas_admit_exactly_what_the_parent_holds(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    replicas = [KubernetesLedger(api, replica=f"r{i}", policy=lambda: policy) for i, api in enumerate(apis)]
    replicas[0].ensure_groups(policy.groups)  # as the runtime does on start
    assert admit(replicas[0], policy, deployment("left-base", "left", "6"), "CREATE").allowed  # no draw
    assert admit(replicas[1], policy, deployment("right-base", "right", "6"), "CREATE").allowed
    assert from_object(apis[0].request("GET", object_path("pool")), "pool").reservations == {}
    start = Barrier(10)

    def one(i: int) -> tuple[int, str, bool]:
        group = "left" if i % 2 == 0 else "right"  # five each
        start.wait()
        until = time.monotonic() + deadline.budget(10)
        decision = admit(replicas[i % 3], policy, deployment(f"borrow-{i}", group), "CREATE", deadline=until)
        return i % 3, group, decision.allowed

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(10)))
    admitted = [(replica, group) for replica, group, allowed in results if allowed]
    assert len(admitted) == 4  # 4 - 0 registered at pool: four draws of 1
    # The ledger holds exactly what was admitted: each sibling its 6 and its admitted borrowers...
    for group in ("left", "right"):
        assert sum(entries(apis[0], group).values()) == 6 + sum(1 for _, g in admitted if g == group)
    # ...and pool each replica's registrations, one per draw it admitted, none of the six refused.
    registered = entries(apis[0], "pool")
    assert {name: count for name, count in registered.items() if count} == {
        f"r{r}~draw": sum(1 for replica, _ in admitted if replica == r) for r in {r for r, _ in admitted}}
    # The leader's fold of left's objects publishes left's draw on pool (the CRD's `drawn` fields are kept).
    leader = KubernetesLedger(apis[0], replica="leader", policy=lambda: policy)
    left_borrowed = sum(1 for _, g in admitted if g == "left")
    leader.observe(ObjectKey("apps", "Deployment", "default", "left-base"), "left", {"requests.cpu": 6 * CPU},
                   resource_version="1")
    state = from_object(apis[0].request("GET", object_path("pool")), "pool")
    # left counts its 6 observed + r0's unconfirmed 6 + its borrowers: d̃ = 12 + borrowed - 6.
    assert state.drawn == {"left": {"requests.cpu": (6 + left_borrowed) * CPU}}
    assert state.drawn_at["left"] == apis[0].request("GET", object_path("left"))["metadata"]["resourceVersion"]
