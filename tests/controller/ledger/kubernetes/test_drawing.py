"""Borrowing's one-object arithmetic (`kubernetes.drawing`), by hand on a three-level tree.

TREE (cpu, whole units): root 20 { p 12 lend 2 borrow 4 { a 4 lend 2 borrow 3, b 4 lend 1 borrow 3 },
c 6 }. With nothing used: T0(a) = 4, L(a) = min(2, 4) = 2, slack K(a) = 2, floor −3; T0(b) = 4, L 1, K 3,
floor −3; T0(p) = (12 − 8) + L(a) + L(b) = 4 + 2 + 1 = 7, L(p) = 2, K(p) = 5, floor −4; T0(root) =
(20 − 12 − 6) + L(p) = 2 + 2 = 4, floor 0 and no slack (a root draws on nothing); c neither lends nor
borrows: no slack.
"""

from __future__ import annotations

from quotalang import borrowing
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.kubernetes.drawing import drawn, growth, shortfalls, terms_of
from quotalang.loader import load_text
from tests.controller.ledger.kubernetes.rig import POLICY

C = 10**9
CPU = "requests.cpu"
TREE_POLICY = POLICY.split("group root {")[0] + """group root {
  requests.cpu 20
}

group p in root {
  requests.cpu 12 lend 2 borrow 4
}

group a in p {
  requests.cpu 4 lend 2 borrow 3
}

group b in p {
  requests.cpu 4 lend 1 borrow 3
}

group c in root {
  requests.cpu 6
}

""" + "kind apps/v1" + POLICY.split("kind apps/v1")[1]


def tree() -> CompiledPolicy:
    return compile_sources(load_text(TREE_POLICY, "tree.quota"))


def test_terms_by_hand() -> None:
    policy = tree()
    terms = {name: terms_of(policy.groups, policy.lending, name) for name in ("root", "p", "a", "b", "c")}
    assert (terms["a"].rest, terms["a"].floor, terms["a"].slack) == ({CPU: 4 * C}, {CPU: -3 * C}, {CPU: 2 * C})
    assert (terms["b"].rest, terms["b"].floor, terms["b"].slack) == ({CPU: 4 * C}, {CPU: -3 * C}, {CPU: 3 * C})
    assert (terms["p"].rest, terms["p"].floor, terms["p"].slack) == ({CPU: 7 * C}, {CPU: -4 * C}, {CPU: 5 * C})
    assert (terms["root"].rest, terms["root"].floor, terms["root"].slack) == ({CPU: 4 * C}, {CPU: 0}, {})
    assert terms["c"].slack == {}


def test_draws_registered_level_by_level_match_the_balance_rule() -> None:
    policy = tree()
    a, b, p, root = (terms_of(policy.groups, policy.lending, n) for n in ("a", "b", "p", "root"))
    # a takes 5 (U 0 -> 5): its draw max(0, 5 - 2) = 3 registered with p; p counts 3, 7 - 3 - 0 = 4 >= -4;
    # p's own draw max(0, 3 - 5) = 0: nothing reaches root.
    assert growth(a, {}, {CPU: 5 * C}) == {CPU: 3 * C}
    assert shortfalls(p, {}, {CPU: 3 * C}) == {}
    assert growth(p, {}, {CPU: 3 * C}) == {}
    # b takes 7 (T0 4 - 7 = -3, its floor): draw 7 - 3 = 4 with p (7 - 3 - 4 = 0 >= -4); p's draw grows
    # max(0, 7 - 5) - max(0, 3 - 5) = 2, registered with root: 4 - 0 - 2 = 2 >= 0.
    assert shortfalls(b, {}, {CPU: 7 * C}) == {}
    assert growth(b, {}, {CPU: 7 * C}) == {CPU: 4 * C}
    assert growth(p, {CPU: 3 * C}, {CPU: 4 * C}) == {CPU: 2 * C}
    assert shortfalls(root, {}, {CPU: 2 * C}) == {}
    # a takes 2 more (U 5 -> 7, T0 4 - 7 = -3 >= -3): draw (7-2) - (5-2) = 2; p: 7 - 7 - 2 = -2 >= -4, grows
    # (9-5) - (7-5) = 2; root: 4 - 2 - 2 = 0 >= 0. A third cpu anywhere in p's subtree: root 4 - 4 - 1 < 0.
    assert growth(a, {CPU: 5 * C}, {CPU: 2 * C}) == {CPU: 2 * C}
    assert growth(p, {CPU: 7 * C}, {CPU: 2 * C}) == {CPU: 2 * C}
    assert shortfalls(root, {CPU: 2 * C}, {CPU: 2 * C}) == {}
    assert shortfalls(root, {CPU: 4 * C}, {CPU: 1 * C}) == {CPU: 1 * C}
    # The same end state by the balance rule itself: T(a) = -3, T(b) = -3, T(p) = 4 + (-3) + (-3) = -2,
    # T(root) = 2 + max(-2, -4) = 0 — what root's object says: T0 4 - counted 4.
    used = {"a": {CPU: 7 * C}, "b": {CPU: 7 * C}}
    assert borrowing.balance(policy.groups, policy.lending, lambda g: used.get(g, {}), "p", CPU) == -2 * C
    assert borrowing.balance(policy.groups, policy.lending, lambda g: used.get(g, {}), "root", CPU) == 0
    # The leader's drawn entries for that state: a's d̃(7) = 5, b's d̃(7) = 4, p's d̃(9) = 4 = 2 + 2 registered.
    assert drawn(a, {CPU: 7 * C}) == {CPU: 5 * C}
    assert drawn(b, {CPU: 7 * C}) == {CPU: 4 * C}
    assert drawn(p, {CPU: 9 * C}) == {CPU: 4 * C}


def test_registrations_on_larger_counted_bases_cover_the_admitted_draw() -> None:
    # a (K 2): counted 4, admitted only 1. x = 3 on the counted base: d̃ 4-2 = 2 -> 7-2 = 5, registers 3;
    # on the admitted base d̃ 0 -> 4-2 = 2, and 2 <= 3 (convexity: over, never under).
    a = terms_of(tree().groups, tree().lending, "a")
    assert growth(a, {CPU: 4 * C}, {CPU: 3 * C}) == {CPU: 3 * C}
    assert growth(a, {CPU: 1 * C}, {CPU: 3 * C}) == {CPU: 2 * C}
    assert growth(a, {CPU: 0}, {CPU: 2 * C}) == {}  # within its slack: nothing to register, one object
