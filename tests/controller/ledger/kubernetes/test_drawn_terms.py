"""A pool's count of its children's draws is read only under the terms it was counted under (`drawnTerms`).

The tree (test_drawing.py), cpu in whole units. Before: a: T0 4, slack 2, floor -3; b: T0 4, slack 3;
p: T0 7, slack 5, floor -4; root: T0 4, floor 0. RAISED (b lends 3 instead of 1): b: L 3, slack 1;
p: T0 (12 - 8) + 2 + 3 = 9, slack 9 - 2 = 7; root: T0 2 + min(2, 9) = 4.
"""

from __future__ import annotations

from quotalang.compiler import compile_sources
from quotalang.controller.ledger.crd import object_path, to_object
from quotalang.controller.ledger.kubernetes.drawing import pool_digests, terms_of
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.runtime import StoreRuntime
from quotalang.decision import Decision
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.server.engine import ask_for
from tests.controller.ledger.kubernetes.rig import CPU, Rig, deployment
from tests.controller.ledger.kubernetes.test_drawing import TREE_POLICY, tree
from tests.controller.ledger.kubernetes.test_registering import entries, replica, said, tree_rig

BEHIND = "counts its children's draws under other lend/borrow terms"


def raised() -> CompiledPolicy:
    return compile_sources(load_text(TREE_POLICY.replace("requests.cpu 4 lend 1 borrow 3",
                                                         "requests.cpu 4 lend 3 borrow 3"), "tree.quota"))


def admit(ledger: KubernetesLedger, policy: CompiledPolicy, name: str, group: str, cpu: str, now: float
          ) -> Decision:
    return ledger.reserve(ask_for(policy, deployment(name, group, cpu), "CREATE", deadline=now + 9.5))


def test_a_raised_lend_is_read_only_once_the_leader_counted_the_pool_again() -> None:
    rig = tree_rig()
    r1, leader = replica(rig, "r1"), replica(rig, "leader")
    # Before: b takes 3 (U 3 = its slack 3: draws nothing), p takes 5 itself (U 5 = its slack 5: nothing on
    # root; floor 7 - 5 >= -4).
    assert rig.admit(r1, "b3", "b", "3").allowed and rig.admit(r1, "p5", "p", "5").allowed
    assert entries(rig, "p") == {"r1": 5} and entries(rig, "root") == {}
    rig.policy = raised()
    # b's 3 now draws 3 - 1 = 2 on p, which p's object does not count yet (it counts 5, truly 7). a takes 7
    # (its floor: 4 - 7 = -3): a draw of 7 - 2 = 5 on p. From p's stale count: p 5 -> 10 (9 - 10 >= -4),
    # p's draw on root max(0, 10 - 7) = 3 <= 4: admitted, though truly p 7 -> 12 draws 5 on root's 4.
    # Refused instead, naming why and that it passes later; nothing registered anywhere.
    stale = rig.admit(r1, "a7", "a", "7")
    assert not stale.allowed and BEHIND in said(stale) and "retry" in said(stale)
    assert entries(rig, "p") == {"r1": 5} and entries(rig, "a") == {}
    # p's own request counts its children's draws too: p takes 1 (truly 9 - 8 >= -4, draw 1 on root) is
    # refused as well while p's object is behind; a within its slack (1 <= 2) never reads p: admitted.
    own = rig.admit(r1, "p1", "p", "1")
    assert not own.allowed and BEHIND in said(own)
    assert rig.admit(r1, "a1", "a", "1").allowed and entries(rig, "a") == {"r1": 1}
    # The leader counts p again: drawn[b] = max(0, 3 - 1) = 2 (a's 1 is within its slack 2: nothing); root
    # too (its child p's slack moved 5 -> 7): p counts 5 + 2 = 7, max(0, 7 - 7) = 0 drawn on root.
    assert leader.republish_draws() == 2
    assert rig.state("p").drawn == {"b": {"requests.cpu": 2 * CPU}} and rig.state("root").drawn == {}
    assert leader.republish_draws() == 0  # caught up: nothing more, no call
    # Under the new terms: a's 6 more (U 1 -> 7) draws 7 - 2 = 5 on p: p 7 -> 12 (9 - 12 = -3 >= -4), p's draw
    # on root grows max(0, 12 - 7) = 5 > 4: 1 short at root. a's 5 more (U 1 -> 6) draws 4: p 11, root 4 - 4 = 0.
    assert "1 of requests.cpu short at root" in said(rig.admit(r1, "a6", "a", "6"))
    assert rig.admit(r1, "a5", "a", "5").allowed
    assert entries(rig, "p") == {"r1": 5, "r1~draw": 4} and entries(rig, "root") == {"r1~draw": 4}


def test_a_replica_still_on_the_old_policy_refuses_what_reads_a_pool_counted_under_the_new_one() -> None:
    rig = tree_rig()
    old = rig.policy
    rig.policy = raised()
    leader, behind = replica(rig, "leader"), rig.replica("behind", policy=lambda: old)
    assert leader.republish_draws() == 2  # p and root, stamped with the new terms (nothing drawn yet)
    now = rig.clock.now
    # Under its old terms a's 3 draws 3 - 2 = 1 on p (p: 7 - 1 >= -4): refused, p counted under other terms;
    # p's own 1 likewise; a's 2 (within a's slack 2 under either policy) reads no pool: admitted.
    assert BEHIND in said(admit(behind, old, "a3", "a", "3", now))
    assert BEHIND in said(admit(behind, old, "p1", "p", "1", now))
    assert admit(behind, old, "a2", "a", "2", now).allowed
    assert entries(rig, "p") == {} and entries(rig, "a") == {"behind": 2}


def test_a_change_that_moves_no_childs_slack_leaves_the_pools_as_they_are() -> None:
    rig = tree_rig()
    r1, leader = replica(rig, "r1"), replica(rig, "leader")
    assert rig.admit(r1, "a5", "a", "5").allowed  # draws 5 - 2 = 3 on p
    # c's hard 6 -> 5 changes root's own room, no child's slack (K(p) = 7 - min(2, 7) = 5 either way).
    before = rig.policy
    rig.policy = compile_sources(load_text(TREE_POLICY.replace("group c in root {\n  requests.cpu 6",
                                                               "group c in root {\n  requests.cpu 5"), "tree.quota"))
    assert before.checksum != rig.policy.checksum
    assert pool_digests(before.groups, before.lending, lambda g: terms_of(before.groups, before.lending, g)) == \
        pool_digests(rig.policy.groups, rig.policy.lending, lambda g: terms_of(rig.policy.groups,
                                                                               rig.policy.lending, g))
    leader.load_all()  # its watch-fed cache
    written, calls = rig.server.revision, leader.api.calls  # type: ignore[attr-defined]
    assert leader.republish_draws() == 0 and rig.server.revision == written
    assert leader.api.calls == calls  # type: ignore[attr-defined]  # decided from the cache: no call
    # a's 2 more draw (7 - 2) - 3 = 2 on p: admitted at once; a's object PUT, p's GET + PUT: as before.
    calls = r1.api.calls  # type: ignore[attr-defined]
    assert rig.admit(r1, "a2", "a", "2").allowed
    assert r1.api.calls - calls == 3  # type: ignore[attr-defined]
    assert entries(rig, "p") == {"r1~draw": 5}


def test_a_pool_from_before_digests_is_behind_only_if_a_child_lends_or_borrows() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1")
    for group in ("p", "root", "c"):
        state = rig.state(group)
        state.drawn_terms = None  # written by a version without digests
        rig.api.request("PUT", object_path(group), body=to_object(state))
    assert BEHIND in said(rig.admit(r1, "p1", "p", "1"))  # p has lending children: behind
    assert rig.admit(r1, "c1", "c", "1").allowed  # c has no children: never behind
    assert tree().checksum == rig.policy.checksum  # the same policy all along: only the digest is missing


def test_the_leaders_upkeep_counts_the_pools_again_after_a_reload() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1")
    runtime = StoreRuntime(replica(rig, "leader"), lambda: rig.policy, fold_interval=0)
    runtime.maintain()  # nothing to count again: the pools were stamped when created
    assert rig.admit(r1, "b3", "b", "3").allowed  # within b's slack 3: p untouched
    rig.policy = raised()
    assert BEHIND in said(rig.admit(r1, "p1", "p", "1"))
    runtime.maintain()  # the next round: p counted again, b's 3 drawing 3 - 1 = 2 there
    digests = pool_digests(rig.policy.groups, rig.policy.lending,
                           lambda g: terms_of(rig.policy.groups, rig.policy.lending, g))
    assert rig.state("p").drawn_terms == digests["p"] and rig.state("root").drawn_terms == digests["root"]
    assert rig.state("p").drawn == {"b": {"requests.cpu": 2 * CPU}}
    # p's 1 now: p counts 2 + 1 = 3 <= its slack 7 (nothing on root), 9 - 3 >= -4: admitted.
    assert rig.admit(r1, "p1-again", "p", "1").allowed


def test_a_pool_created_while_a_child_draws_waits_for_the_leader() -> None:
    rig = Rig()
    rig.policy = tree()  # no objects yet: each is created by its first read
    r1, r2, leader = replica(rig, "r1"), replica(rig, "r2"), replica(rig, "leader")
    # a's 5 creates p to register its draw 3: a's object counted 0 then, so p's empty count is right: stamped.
    assert rig.admit(r1, "a5", "a", "5").allowed and entries(rig, "p") == {"r1~draw": 3}
    # b's 7 registers 4 at p (p counts 7) and p's growth max(0, 7 - 5) = 2 at root, which does not exist:
    # created then, p draws 2 on it already, so root is not stamped and the draw is refused (p's 4 lowered).
    behind = rig.admit(r2, "b7", "b", "7")
    assert not behind.allowed and BEHIND in said(behind)
    assert entries(rig, "p") == {"r1~draw": 3} and rig.state("root").drawn_terms is None
    # The leader (its watch-fed cache: p caught up) counts root alone: p counts 3, draws max(0, 3 - 5) = 0.
    # Then b's 7 as in test_registering.
    leader.load_all()
    assert leader.republish_draws() == 1 and rig.state("root").drawn == {}
    assert rig.admit(r2, "b7-again", "b", "7").allowed
    assert entries(rig, "root") == {"r2~draw": 2}


def test_in_warn_mode_a_draw_on_a_pool_behind_is_counted_and_warned_in_a_short_line() -> None:
    rig = tree_rig()
    r1 = replica(rig, "r1")
    assert rig.admit(r1, "b3", "b", "3").allowed
    rig.policy = compile_sources(load_text(TREE_POLICY.replace("requests.cpu 4 lend 1 borrow 3",
                                                               "requests.cpu 4 lend 3 borrow 3").replace(
        "group a in p {\n", "group a in p {\n  mode warn\n").replace("group p in root {\n",
                                                                     "group p in root {\n  mode warn\n"),
        "tree.quota"))
    # a's 7 draws 5 on p, which is behind: admitted (warn mode) and registered, saying why in one short line;
    # p's own 1 likewise (its mode is warn too).
    drawing, own = rig.admit(r1, "a7", "a", "7"), rig.admit(r1, "p1", "p", "1")
    assert drawing.allowed and own.allowed
    assert drawing.warnings == ["a borrowed 3 of requests.cpu from root/p",  # the evaluator's: 7 - hard 4
                                "group root/p/a borrows beyond what is free: root/p counts draws under other terms "
                                "until the leader catches up"]
    assert own.warnings[-1] == "group root/p counts draws under other terms until the leader catches up"
    assert all(len(w) < 120 for w in [*drawing.warnings, *own.warnings])
    assert entries(rig, "p") == {"r1": 1, "r1~draw": 5}
