"""Asks and answers on the fake API: a request kept out only by another replica's unsettled entries asks,
and is decided again once that replica answered; an entry nobody answers still counts.

By hand, group `mid` (20 cpu): replica a admits 4 × 1 cpu and holds a lease
of 4 (16 free after its 4: 4 × 4 fits). b's 13 would need 4 + 4 + 13 = 21:
denied while a's lease counts, 4 + 13 = 17 once a returns it.
"""

from __future__ import annotations

from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from tests.controller.ledger.kubernetes.rig import Rig


def leased(rig: Rig) -> KubernetesLedger:
    a = rig.replica("a")
    for i in range(4):
        assert rig.admit(a, f"web-{i}", "mid").allowed
    assert rig.entries("mid") == {"a": 4, "a~lease": 4}
    return a


def test_a_request_kept_out_by_a_lease_asks_and_is_admitted_once_the_lease_is_returned() -> None:
    rig = Rig()
    a, b = leased(rig), rig.replica("b")
    started = rig.clock.now

    def a_runs() -> None:  # what a's threads do each tick b waits: its watch feeds its cache, its tidy answers
        a.load_all()
        a.tidy(patient=True)

    rig.clock.during_sleep = a_runs
    assert rig.admit(b, "huge", "mid", "13").allowed
    assert rig.clock.now - started < 0.5  # one tick or so, not the answer wait (2 s)
    state = rig.state("mid")
    assert rig.entries("mid") == {"a": 4, "b": 13} and state.asks == 1
    assert state.reservations["a"].answered == 1  # a's entry answered the ask


def test_a_lease_nobody_returns_still_counts_and_the_request_is_denied_after_the_wait() -> None:
    rig = Rig(Tuning(answer_wait=1.0))
    leased(rig)
    b = rig.replica("b")  # a never answers (no tidy runs)
    started = rig.clock.now
    denied = rig.admit(b, "huge", "mid", "13")
    assert not denied.allowed and "used 8 of 20" in denied.message
    assert 1.0 <= rig.clock.now - started < 1.3  # the whole answer wait, in 0.1 s polls
    assert rig.entries("mid") == {"a": 4, "a~lease": 4}  # b holds nothing


def test_a_request_that_does_not_fit_even_without_the_others_does_not_ask() -> None:
    rig = Rig()
    leased(rig)
    b = rig.replica("b")
    started = rig.clock.now
    # Before asking, every other entry may hold less than it says (a's sum too): 17 would fit without them and
    # asks; 21 fits in no case (21 > 20 with nothing else held) and is denied at once.
    assert not rig.admit(b, "huge", "mid", "21").allowed
    assert rig.clock.now == started and rig.state("mid").asks == 0
