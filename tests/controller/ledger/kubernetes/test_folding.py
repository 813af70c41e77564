"""The fold queue and the leader's fenced writes, on the fake API and virtual time.

By hand: 1-cpu objects observed in `big`; a fold adds their usage to
`observed` and lists each `identity@resourceVersion` in `folded`.
"""

from __future__ import annotations

import pytest

from quotalang.controller.ledger.base import NotLeader, ObjectKey
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from tests.controller.ledger.kubernetes.rig import CPU, Rig


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "default", name)


def test_growth_waits_its_patience_and_a_release_is_due_at_once() -> None:
    rig = Rig(Tuning(fold_patience=2.0))
    leader = rig.replica("leader", fold_interval=0.1)  # the fold thread flushes, not each call
    leader.observe(key("a"), "big", {"requests.cpu": CPU}, resource_version="10")
    leader.observe(key("b"), "big", {"requests.cpu": CPU}, resource_version="11")
    assert leader.flush(patient=True) == 0  # growth only: waits
    rig.clock.now += 1.9
    assert leader.flush(patient=True) == 0
    rig.clock.now += 0.1  # 2.0 since the first: due
    assert leader.flush(patient=True) == 1  # both in one write
    state = rig.state("big")
    assert (state.observed, state.objects) == ({"requests.cpu": 2 * CPU}, 2)
    leader.forget(key("a"))
    assert leader.flush(patient=True) == 1  # a release: at once
    assert rig.state("big").observed == {"requests.cpu": CPU}


def test_another_replicas_admission_is_listed_in_the_fold_and_leaves_its_sum_when_it_sees_it() -> None:
    rig = Rig()
    admitting, leader = rig.replica("a"), rig.replica("leader")
    assert rig.admit(admitting, "web", "big").allowed
    leader.observe(key("web"), "big", {"requests.cpu": CPU}, resource_version="50")
    state = rig.state("big")
    assert state.folded == ["apps/Deployment/default/web@50"]
    assert state.observed == {"requests.cpu": CPU} and rig.entries("big") == {"a": 1}  # counted twice a moment
    admitting.remember(state)  # its watch sees the fold
    assert admitting.reservations("big") == {}
    assert admitting.tidy() == 1 and rig.entries("big") == {}  # its smaller sum, written


def test_a_fold_write_whose_answer_was_lost_is_not_applied_twice() -> None:
    rig = Rig()
    leader = rig.replica("leader")
    leader.read("big", rig.clock.now + 10)

    class LoseOnePut:
        lost = False

        def fault(self, method: str, path: str) -> str | None:
            if method == "PUT" and not self.lost:
                self.lost = True
                return "lost"  # the write lands, its answer does not
            return None

        def answered(self, method: str, path: str) -> None:
            return None

    leader.api.network = LoseOnePut()  # type: ignore[attr-defined]
    leader.observe(key("a"), "big", {"requests.cpu": CPU}, resource_version="10")
    assert (rig.state("big").observed, rig.state("big").objects) == ({"requests.cpu": CPU}, 1)  # once


def test_an_older_leader_steps_back() -> None:
    rig = Rig()
    epochs = {"old": 1, "new": 2}
    old = rig.replica("old", fence=lambda: epochs["old"])
    new = rig.replica("new", fence=lambda: epochs["new"])
    old.observe(key("a"), "big", {"requests.cpu": CPU}, resource_version="10")
    new.observe(key("b"), "big", {"requests.cpu": CPU}, resource_version="11")
    with pytest.raises(NotLeader, match="epoch 2"):
        old.observe(key("c"), "big", {"requests.cpu": CPU}, resource_version="12")
    assert rig.state("big").objects == 2 and old.stats.fenced == 1
