"""Lease sizing and windows on the fake API and virtual time (no apiserver, no sleeping).

By hand, group `big` (1000 cpu), 1-cpu admissions one at a time: a batch
takes a lease once 4 were admitted in the current window and the one
before; its size is the largest of 256, 128, ..., 1 no larger than that
count which leaves room for 4 × m after it.
"""

from __future__ import annotations

from quotalang.controller.ledger.kubernetes.tuning import Tuning
from tests.controller.ledger.kubernetes.rig import Rig


def test_the_fourth_admission_in_a_window_takes_a_lease_of_four_and_the_next_ones_write_nothing() -> None:
    rig = Rig()
    ledger = rig.replica("r0")
    for i in range(3):
        assert rig.admit(ledger, f"web-{i}", "big").allowed
    assert rig.entries("big") == {"r0": 3}  # 3 in the window: no lease
    assert rig.admit(ledger, "web-3", "big").allowed
    assert rig.entries("big") == {"r0": 4, "r0~lease": 4}  # 4 lately: 4 (16 ≤ 996 free)
    writes = ledger.stats.writes
    for i in range(4, 8):
        assert rig.admit(ledger, f"web-{i}", "big").allowed
    assert ledger.stats.writes == writes and ledger.stats.leased == 4  # all four within the lease
    assert rig.admit(ledger, "web-8", "big").allowed  # the lease is spent: a write, 9 lately, a lease of 8
    assert rig.entries("big") == {"r0": 9, "r0~lease": 8}


def test_the_window_before_counts_and_one_two_windows_back_does_not() -> None:
    rig = Rig(Tuning(lease_window=3.0))
    ledger = rig.replica("r0")
    for i in range(2):
        assert rig.admit(ledger, f"a-{i}", "big").allowed
    rig.clock.now += 3.1  # the next window: 2 before
    assert rig.admit(ledger, "b-0", "big").allowed
    assert "r0~lease" not in rig.entries("big")  # 2 + 1 = 3
    assert rig.admit(ledger, "b-1", "big").allowed
    assert rig.entries("big")["r0~lease"] == 4  # 2 + 2 = 4
    rig.clock.now += 6.2  # two windows on: nothing lately
    writes = ledger.stats.writes
    assert rig.admit(ledger, "c-0", "big").allowed
    assert ledger.stats.writes == writes + 1 and "r0~lease" not in rig.entries("big")  # returned, none new


def test_a_lease_never_takes_the_last_fifth_of_what_is_free() -> None:
    """`mid` has 20: after 4 admissions 16 are free; a lease of 4 needs 4 × 4 = 16 after it: it fits. With
    12 used by another replica, 4 are free after our 4: 4 × 1 = 4 fits, 4 × 2 = 8 does not: a lease of 1."""
    rig = Rig()
    other, ledger = rig.replica("other"), rig.replica("r0")
    assert rig.admit(other, "big-one", "mid", "12").allowed
    for i in range(4):
        assert rig.admit(ledger, f"web-{i}", "mid").allowed
    assert rig.entries("mid") == {"other": 12, "r0": 4, "r0~lease": 1}


def test_a_lease_past_its_window_hands_out_nothing_more() -> None:
    rig = Rig(Tuning(lease_window=3.0))
    ledger = rig.replica("r0")
    for i in range(4):
        assert rig.admit(ledger, f"web-{i}", "big").allowed
    assert rig.entries("big")["r0~lease"] == 4
    rig.clock.now += 3.0  # the window is over (usable until start + 3)
    writes = ledger.stats.writes
    assert rig.admit(ledger, "late", "big").allowed
    assert ledger.stats.writes == writes + 1 and ledger.stats.leased == 0  # written, not handed out
