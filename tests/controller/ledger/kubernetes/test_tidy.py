"""Tidy, expiry and resync on the fake API and virtual time.

By hand: the reservation TTL is 30 s; 1-cpu admissions in `big`.
"""

from __future__ import annotations

from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from tests.controller.ledger.kubernetes.rig import CPU, Rig


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "default", name)


def test_an_admission_never_confirmed_leaves_its_sum_at_its_deadline() -> None:
    rig = Rig()
    ledger = rig.replica("r0")
    assert rig.admit(ledger, "web", "big").allowed
    rig.clock.now += 20
    assert rig.admit(ledger, "api", "big").allowed
    assert ledger.tidy() == 0 and rig.entries("big") == {"r0": 2}  # nothing due
    rig.clock.now += 10  # web's 30 s are over, api has 10 left
    assert ledger.tidy(patient=True) == 1  # an expiry frees quota: written at once, patient or not
    assert rig.entries("big") == {"r0": 1}


def test_a_sum_lowered_by_a_fold_waits_the_tidy_lag_when_patient() -> None:
    rig = Rig(Tuning(tidy_lag=4.0))
    admitting, leader = rig.replica("a"), rig.replica("leader")
    assert rig.admit(admitting, "web", "big").allowed
    leader.observe(key("web"), "big", {"requests.cpu": CPU}, resource_version="50")
    admitting.remember(rig.state("big"))
    rig.clock.now += 3.9
    assert admitting.tidy(patient=True) == 0 and rig.entries("big") == {"a": 1}
    rig.clock.now += 0.1
    assert admitting.tidy(patient=True) == 1 and rig.entries("big") == {}


def test_the_leader_drops_an_entry_past_its_last_deadline() -> None:
    rig = Rig()
    dead, leader = rig.replica("dead"), rig.replica("leader")
    assert rig.admit(dead, "web", "big").allowed
    leader.load_all()
    assert leader.expire() == 0  # 30 s left
    rig.clock.now += 30
    assert leader.expire() == 1 and rig.entries("big") == {}


def test_a_resync_replaces_observed_usage_and_keeps_the_reservations() -> None:
    rig = Rig()
    admitting, leader = rig.replica("a"), rig.replica("leader")
    leader.observe(key("gone"), "big", {"requests.cpu": 5 * CPU}, resource_version="40")
    assert rig.admit(admitting, "new", "big").allowed
    leader.resync({"big": {key("kept"): {"requests.cpu": 2 * CPU}}})
    state = rig.state("big")
    # The listing has `kept` (2) and not `gone`; `gone` was told in this term but is not in the listing:
    # a told object keeps its told group and the larger usage (5), so the merged index holds both.
    assert state.observed == {"requests.cpu": 7 * CPU}
    assert rig.entries("big") == {"a": 1}  # the unconfirmed admission is kept
