"""The cache: what an earlier incarnation under the same name left in its entries (a container restart keeps the
pod's name); confirmations from `folded` are in test_folding.py.

By hand: 1-cpu admissions in `big`; the reservation TTL is 30 s.
"""

from __future__ import annotations

from quotalang.controller.ledger.base import ObjectKey
from tests.controller.ledger.kubernetes.rig import Rig


def test_a_replica_restarted_under_its_name_keeps_its_old_entry_until_its_deadline() -> None:
    rig = Rig()
    old = rig.replica("r0")
    assert rig.admit(old, "web", "big").allowed  # held by r0's entry, never folded; then r0 restarts
    rig.clock.now += 10
    new = rig.replica("r0")  # empty memory, the same name
    assert rig.admit(new, "api", "big").allowed
    assert rig.entries("big") == {"r0": 2}  # web (until its deadline) + api; it used to be overwritten: 1
    assert new.pending() == [ObjectKey("apps", "Deployment", "default", "api")]  # web is no identity of its own
    rig.clock.now += 20  # web's 30 s are over
    assert new.tidy() == 1 and rig.entries("big") == {"r0": 1}


def test_a_replicas_own_entry_is_never_taken_for_an_earlier_incarnations() -> None:
    rig = Rig()
    ledger = rig.replica("r0")
    for name in ("a", "b"):
        assert rig.admit(ledger, name, "big").allowed
    ledger.load_all()  # its own writes, seen again
    assert set(ledger.reservations("big")) == {"apps/Deployment/default/a", "apps/Deployment/default/b"}
    assert rig.entries("big") == {"r0": 2}

