"""Registering draws with the ancestors' objects (`kubernetes.registering`), on the fake API and virtual time.

The tree and its terms by hand: tests/controller/ledger/kubernetes/test_drawing.py (cpu, whole units):
a: T0 4, slack 2, floor -3; b: T0 4, slack 3, floor -3; p: T0 7, slack 5, floor -4; root: T0 4, floor 0.
A draw is the growth of max(0, U - slack), registered with the parent as `<replica>~draw`.
"""

from __future__ import annotations

import pytest

from quotalang.compiler import compile_sources
from quotalang.controller.ledger.base import LedgerUnavailable, ObjectKey
from quotalang.controller.ledger.crd import object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.decision import Decision
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.controller.ledger.kubernetes.rig import CPU, Rig, deployment
from tests.controller.ledger.kubernetes.test_drawing import TREE_POLICY, tree


class Script:
    """Faults for the calls whose method and path match, each used once, in order."""

    def __init__(self, *faults: tuple[str, str, str]) -> None:
        self.faults = list(faults)

    def fault(self, method: str, path: str) -> str | None:
        for index, (want_method, want_path, fault) in enumerate(self.faults):
            if method == want_method and path == object_path(want_path):
                del self.faults[index]
                return fault
        return None

    def answered(self, method: str, path: str) -> None:
        return None


def entries(rig: Rig, group: str) -> dict[str, int]:
    """`Rig.entries`, or none where the group's object was never created (nothing ever reached it)."""
    return rig.entries(group) if rig.server.objects.get(object_path(group)) is not None else {}


def said(decision: Decision) -> str:
    """A denial's text: its error, or what its violations say is short beyond the group."""
    return decision.error or "; ".join(v.beyond for v in decision.violations)


def tree_rig() -> Rig:
    """The tree's objects created first, as the runtime does on start (each pool stamped with its children's
    terms: they draw nothing yet)."""
    rig = Rig()
    rig.policy = tree()
    rig.replica("setup", policy=lambda: rig.policy).ensure_groups(rig.policy.groups)
    return rig


def replica(rig: Rig, name: str, script: Script | None = None) -> KubernetesLedger:
    ledger = rig.replica(name, policy=lambda: rig.policy)
    if script is not None:
        ledger.api.network = script  # type: ignore[attr-defined]
    return ledger


def test_draws_are_registered_nearest_first_and_a_denial_names_the_ancestor() -> None:
    rig = tree_rig()
    r1, r2 = replica(rig, "r1"), replica(rig, "r2")
    # a takes 5: draw 5 - 2 = 3 with p (p: 7 - 3 = 4 >= -4); p's draw max(0, 3 - 5) = 0: root untouched.
    assert rig.admit(r1, "a5", "a", "5").allowed
    assert entries(rig, "p") == {"r1~draw": 3} and entries(rig, "a") == {"r1": 5}
    assert entries(rig, "root") == {}
    # b takes 7 on another replica: draw 4 with p (7 - 3 - 4 = 0), p's draw grows max(0, 7-5) - 0 = 2 with
    # root (4 - 2 = 2 >= 0).
    assert rig.admit(r2, "b7", "b", "7").allowed
    assert entries(rig, "p") == {"r1~draw": 3, "r2~draw": 4} and entries(rig, "root") == {"r2~draw": 2}
    # a takes 2 more: draw (7-2) - (5-2) = 2 with p (7 - 7 - 2 = -2 >= -4), p's grows (9-5) - (7-5) = 2
    # with root (4 - 2 - 2 = 0).
    assert rig.admit(r1, "a2", "a", "2").allowed
    assert entries(rig, "p") == {"r1~draw": 5, "r2~draw": 4}
    assert entries(rig, "root") == {"r1~draw": 2, "r2~draw": 2}
    # p itself takes 1: p's floor holds (7 - 9 - 1 = -3 >= -4) but its draw grows 1 on root, which counts
    # 4 of T0 4: refused there (p's object counts its children's draws, so its own check sees it), named;
    # p's own object and the registrations unchanged.
    denied = rig.admit(r2, "p1", "p", "1")
    assert not denied.allowed and "1 short at root" in said(denied)
    assert entries(rig, "p") == {"r1~draw": 5, "r2~draw": 4} and entries(rig, "root") == {"r1~draw": 2, "r2~draw": 2}


def test_a_request_within_its_slack_touches_its_own_object_alone() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1")
    assert rig.admit(r1, "warm", "a", "1").allowed  # creates a's object
    calls = r1.api.calls  # type: ignore[attr-defined]
    assert rig.admit(r1, "a1", "a", "1").allowed  # U 1 -> 2 = slack 2: draws nothing
    assert r1.api.calls - calls == 1  # type: ignore[attr-defined]  # one PUT of a, from the cache
    assert entries(rig, "a") == {"r1": 2}
    assert "r1~draw" not in entries(rig, "p")  # p never read nor written (its one call above was a's PUT)


def test_a_conflict_on_the_ancestor_is_decided_again_on_its_new_version() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1", Script(("PUT", "p", "conflict")))
    r2 = replica(rig, "r2")
    assert rig.admit(r2, "b4", "b", "4").allowed  # b's draw 1 on p
    assert rig.admit(r1, "a5", "a", "5").allowed  # a's 3, after a 409 on p: registered once, over r2's
    assert entries(rig, "p") == {"r1~draw": 3, "r2~draw": 1}


def test_a_lost_answer_after_the_ancestor_write_registers_once() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1", Script(("PUT", "p", "lost")))
    assert rig.admit(r1, "a5", "a", "5").allowed
    assert entries(rig, "p") == {"r1~draw": 3}  # the sum written again, not 3 + 3
    # What is left of p's pool is exact: b may draw 7 - 3 - (-4) = 8... its own floor stops it at 7 (draw 4).
    r2 = replica(rig, "r2")
    assert rig.admit(r2, "b7", "b", "7").allowed


def test_a_crash_between_the_two_writes_holds_the_room_until_the_registration_expires() -> None:
    rig = tree_rig()
    # a's object never takes the write: registered with p, then gave up at the deadline (as a crash would).
    r1 = replica(rig, "r1")
    assert rig.admit(r1, "warm", "a", "0.001").allowed  # a's object exists
    r1.api.network = Script(*[("PUT", "a", "unavailable")] * 500)  # type: ignore[attr-defined]
    with pytest.raises(LedgerUnavailable):
        rig.admit(r1, "a7", "a", "6.9")  # U 0.001 -> 6.901 (floor: 4 - 6.901 >= -3); draw 4.901 with p
    assert entries(rig, "p") == {"r1~draw": 4}  # whole cpus: 4.901
    assert entries(rig, "a") == {"r1": 0}  # only the warm-up's 0.001: nothing admitted
    # p itself wants 5: its floor holds (7 - 4.901 - 5 = -2.901 >= -4) but its draw max(0, 9.901 - 5) =
    # 4.901 exceeds root's T0 4: refused at root while the registration is held (over, never under).
    r2 = replica(rig, "r2")
    assert "short at root" in said(rig.admit(r2, "p5", "p", "5"))
    # Past the registration's deadline + TTL the leader drops the entry: the room is back (U_p 0 -> 5 is
    # within p's slack 5: nothing drawn on root).
    rig.clock.now += 60
    leader = replica(rig, "leader")
    leader.read("p", rig.clock.now + 5)
    assert leader.expire() >= 1
    assert "r1~draw" not in entries(rig, "p")
    assert rig.admit(r2, "p5-again", "p", "5").allowed
    assert entries(rig, "root") == {}


def admitted_and_folded(rig: Rig) -> tuple[KubernetesLedger, KubernetesLedger]:
    """r1 admits 5 cpu in a (a draw of 3 on p), and the leader folds that object: (r1, leader)."""
    r1, leader = replica(rig, "r1"), replica(rig, "leader")
    assert rig.admit(r1, "a5", "a", "5").allowed
    leader.observe(ObjectKey("apps", "Deployment", "default", "a5"), "a", {"requests.cpu": 5 * CPU},
                   resource_version="90")
    return r1, leader


def test_the_leader_publishes_what_a_group_draws_and_only_forward() -> None:
    rig = tree_rig()
    r1, leader = admitted_and_folded(rig)
    state = rig.state("p")
    # The fold's version of a counts 5 observed + r1's unconfirmed 5 (r1 has not seen the fold yet):
    # d̃ = 10 - 2 = 8, at that version; p counts it on top of r1's registration 3 (over, never under).
    assert state.drawn == {"a": {"requests.cpu": 8 * CPU}}
    assert state.drawn_at == {"a": rig.state("a").resource_version}
    assert state.used(rig.clock.wall()) == {"requests.cpu": 11 * CPU}
    r1.read("a", rig.clock.now + 5)
    r1.tidy()  # r1 drops its folded admission from its entry: a counts 5
    leader.read("a", rig.clock.now + 5)
    leader.read("p", rig.clock.now + 5)
    assert leader.publish_draws() == 1  # the leader's upkeep lowers it: d̃(5) = 3
    assert rig.state("p").drawn == {"a": {"requests.cpu": 3 * CPU}}
    assert leader.publish_draws() == 0  # nothing more to lower; never raised here
    leader.observe(ObjectKey("apps", "Deployment", "default", "other"), "a", {"requests.cpu": CPU},
                   resource_version="91")  # the leader's next write of a: 6 counted, d̃ = 6 - 2 = 4
    assert rig.state("p").drawn == {"a": {"requests.cpu": 4 * CPU}}
    # Past the TTL r1's registration is gone and p counts a's draw by `drawn` alone: 4. p itself asks 6: its
    # floor holds (7 - 4 - 6 = -3 >= -4), but its draw max(0, 10 - 5) = 5 > root's T0 4: refused there.
    # (Without `drawn` counted, p would see 0 and draw max(0, 6 - 5) = 1.) 5 fits: draw 4, root 4 - 4 = 0.
    rig.clock.now += 60
    leader.read("p", rig.clock.now + 5)
    leader.expire()
    assert entries(rig, "p") == {}
    assert "short at root" in said(rig.admit(r1, "p6", "p", "6"))
    assert rig.admit(r1, "p5", "p", "5").allowed
    assert entries(rig, "root") == {"r1~draw": 4}
    # What p shows as its own (API, pages, metrics): its 5, not the draws counted there for decisions.
    assert r1.used("p")["requests.cpu"] == 5 * CPU
    assert r1.group_usage("p").used["requests.cpu"] == 5 * CPU


def test_a_draw_the_leader_failed_to_publish_is_published_by_its_upkeep() -> None:
    rig = tree_rig()
    r1, leader = replica(rig, "r1"), replica(rig, "leader")
    assert rig.admit(r1, "a5", "a", "5").allowed
    leader.read("p", rig.clock.now + 5)
    leader.api.network = Script(*[("PUT", "p", "unavailable")] * 10_000)  # type: ignore[attr-defined]
    leader.observe(ObjectKey("apps", "Deployment", "default", "a5"), "a", {"requests.cpu": 5 * CPU},
                   resource_version="90")  # a's fold lands; its draw on p does not
    assert rig.state("p").drawn == {}
    leader.api.network = Script()  # type: ignore[attr-defined]
    assert leader.publish_draws() == 1  # retried whole, though it raises: d̃(5 + r1's 5) = 8
    assert rig.state("p").drawn == {"a": {"requests.cpu": 8 * CPU}}


def test_a_policy_change_republishes_every_draw_under_the_new_terms() -> None:
    rig = tree_rig()
    _, leader = admitted_and_folded(rig)
    assert rig.state("p").drawn == {"a": {"requests.cpu": 8 * CPU}}  # 10 counted - slack 2
    # a stops lending: T0 4, L 0, slack 4, so the same 10 counted draw 6 (lower: even the upkeep would).
    # p's own draw on root is published by that write of p: p counts r1's 3 + 6 = 9, max(0, 9 - K(p)),
    # K(p) = T0(p) - min(2, T0(p)) with T0(p) = 4 + L(a) 0 + L(b) 1 = 5: 9 - 3 = 6.
    rig.policy = compile_sources(load_text(TREE_POLICY.replace("requests.cpu 4 lend 2 borrow 3",
                                                               "requests.cpu 4 borrow 3"), "tree.quota"))
    leader.read("p", rig.clock.now + 5)
    assert leader.republish_draws() >= 1
    assert rig.state("p").drawn == {"a": {"requests.cpu": 6 * CPU}}
    assert rig.state("root").drawn == {"p": {"requests.cpu": 6 * CPU}}


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_a_pool_without_room_refuses_in_enforce_mode_and_is_counted_in_warn_mode(mode: str) -> None:
    rig = tree_rig()
    if mode == "warn":
        rig.policy = compile_sources(load_text(TREE_POLICY.replace(
            "group a in p {\n", "group a in p {\n  mode warn\n"), "tree.quota"))
    r1, r2 = replica(rig, "r1"), replica(rig, "r2")
    assert rig.admit(r2, "b7", "b", "7").allowed  # b's draw 4 on p; p's draw max(0, 4 - 5) = 0 on root
    # p itself takes 2: p counts 4 + 2 = 6, its draw max(0, 6 - 5) = 1 on root (4 - 1 >= 0).
    assert rig.admit(r2, "p2", "p", "2").allowed
    assert entries(rig, "root") == {"r2~draw": 1}
    # a takes 7: its own floor holds (4 - 7 = -3) and its view of p is empty, so the evaluator admits it;
    # its draw 7 - 2 = 5 on p holds there (7 - 6 - 5 = -4 >= -4), but p's draw grows max(0, 11 - 5) -
    # max(0, 6 - 5) = 5 on root: 4 - 1 - 5 = -2, 2 short at root.
    decision = rig.admit(r1, "a7", "a", "7")
    if mode == "enforce":
        assert not decision.allowed and "2 of requests.cpu short at root" in said(decision)
        assert entries(rig, "p") == {"r2": 2, "r2~draw": 4} and entries(rig, "root") == {"r2~draw": 1}  # lowered
        assert entries(rig, "a") == {}
    else:
        assert decision.allowed and any("2 of requests.cpu short at root" in w for w in decision.warnings)
        assert entries(rig, "p") == {"r1~draw": 5, "r2": 2, "r2~draw": 4}
        assert entries(rig, "root") == {"r1~draw": 5, "r2~draw": 1}
        assert entries(rig, "a") == {"r1": 7}


def test_a_dry_run_that_would_draw_is_answered_from_the_pools_it_would_grow() -> None:
    rig = tree_rig()
    r1, r2 = replica(rig, "r1"), replica(rig, "r2")
    assert rig.admit(r2, "b7", "b", "7").allowed
    assert rig.admit(r2, "p2", "p", "2").allowed
    # The numbers of the test above: a's 7 is 2 cpu short at root. a's 3 draws 3 - 2 = 1 on p: p counts
    # 6 + 1 = 7, its draw grows max(0, 7 - 5) - max(0, 6 - 5) = 1 on root, 4 - 1 - 1 = 2 >= 0: fits.
    r1.read("a", rig.clock.now + 5)  # a's object exists (a first read creates it)
    written = rig.server.revision
    dry = r1.reserve(ask_for(rig.policy, deployment("a7", "a", "7"), "CREATE", dry_run=True,
                             deadline=rig.clock.now + 9.5))
    assert not dry.allowed and "2 of requests.cpu short at root" in said(dry)
    fits = r1.reserve(ask_for(rig.policy, deployment("a3", "a", "3"), "CREATE", dry_run=True,
                              deadline=rig.clock.now + 9.5))
    assert fits.allowed
    assert rig.server.revision == written  # read, never written
