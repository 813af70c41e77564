"""Borrowing figures (`quotalang.lent`) by hand, on test_borrowing's three-level tree.

    root            gpu 20                 own 20 − (12 + 6) = 2
    ├─ ai-platform  gpu 12  borrow 4       own 12 − (4 + 4) = 4
    │  ├─ vision    gpu  4  lend 2
    │  └─ nlp       gpu  4  borrow 3
    └─ data         gpu  6  lend 3         own 6 − 4 = 2
       └─ etl       gpu  4  lend 1 borrow 2

Each case works out T (balance), share = min(lend, max(T, −borrow)), who
funds a deficit and what a lender could not take back, in its comment.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotalang.borrowing import balance
from quotalang.compiler import compile_sources
from quotalang.lent import Lent, figures, key_figures, lending_keys
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from tests.quotalang.test_borrowing import A100, GPU, GROUPS, LENDING, POLICY, ask

N = 10**9


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "tree.quota"))


def gpu(policy: CompiledPolicy, state: Mapping[str, int]) -> dict[str, Lent]:
    table = {g: {GPU: n * N} for g, n in state.items()}
    return key_figures(policy.groups, LENDING, lambda g: table.get(g, {}), GPU)


def summary(rows: dict[str, Lent]) -> dict[str, tuple[int, int, list[tuple[str, int]], int, int]]:
    """group -> (T, borrowed, draws, lent_out, over) in whole GPUs."""
    return {g: (r.balance // N, r.borrowed // N, [(s, a // N) for s, a in r.draws], r.lent_out // N, r.over // N)
            for g, r in rows.items()}


def test_idle_tree_borrows_and_lends_nothing(policy: CompiledPolicy) -> None:
    # T as in test_borrowing's docstring: root 5, ai-platform 6, vision 4, nlp 4, data 3, etl 4. Nobody's T
    # is below 0, and every lender's parent can give back its whole offer (root 5 ≥ data's 3, etc.).
    assert summary(gpu(policy, {})) == {
        "root": (5, 0, [], 0, 0), "ai-platform": (6, 0, [], 0, 0), "data": (3, 0, [], 0, 0),
        "vision": (4, 0, [], 0, 0), "nlp": (4, 0, [], 0, 0), "etl": (4, 0, [], 0, 0)}


def test_guarantee_and_terms(policy: CompiledPolicy) -> None:
    # vision: hard 4, lend 2 → guarantee 2; nlp: hard 4, borrow 3, lend 0 → guarantee 4.
    rows = gpu(policy, {})
    assert (rows["vision"].hard, rows["vision"].lend, rows["vision"].guarantee) == (4 * N, 2 * N, 2 * N)
    assert (rows["nlp"].borrow, rows["nlp"].guarantee) == (3 * N, 4 * N)


def test_a_siblings_lend_borrowed_at_the_parent(policy: CompiledPolicy) -> None:
    # root 2, ai-platform 4, nlp 6, data 2, etl 4: nlp T 4 − 6 = −2, share −2: borrowed 2.
    # ai-platform's own room 12 − 8 − 4 = 0, vision offers min(2, 4) = 2: it funds nlp's 2 itself
    # (it lends nothing up), T 0 + 2 − 2 = 0. vision's 2 cannot be given back: ai-platform T 0 may drop
    # to −4 but passes all of it to root, whose T 2 − 2 + 0 + 0 = 0: lent out 2.
    got = summary(gpu(policy, {"root": 2, "ai-platform": 4, "nlp": 6, "data": 2, "etl": 4}))
    assert got["nlp"] == (-2, 2, [("ai-platform", 2)], 0, 0)
    assert got["vision"] == (4, 0, [], 2, 0)
    assert got["ai-platform"] == (0, 0, [], 0, 0)
    assert got["root"] == (0, 0, [], 0, 0)


def test_the_same_lend_is_not_lent_out_when_root_has_room(policy: CompiledPolicy) -> None:
    # As above with root's own use 0: root T 2. vision taking its 2 back drops ai-platform 0 → −2 ≥ −4,
    # passed to root 2 → 0 ≥ 0: it can, so nothing of vision's is lent out; nlp still borrows 2 at ai-platform.
    got = summary(gpu(policy, {"ai-platform": 4, "nlp": 6, "data": 2, "etl": 4}))
    assert got["vision"] == (4, 0, [], 0, 0)
    assert got["nlp"] == (-2, 2, [("ai-platform", 2)], 0, 0)


def test_borrowing_through_two_levels_names_each_pool(policy: CompiledPolicy) -> None:
    # ai-platform's own 4 used, nlp 7: nlp T −3 (borrowed 3). ai-platform: own room 0, vision offers 2,
    # T 0 + 2 − 3 = −1, share −1: it borrows 1 from root (root: own room 2 + data's offer 3 = 5, T 4).
    # nlp's 3: 2 at ai-platform (vision's lend), 1 at root through ai-platform.
    got = summary(gpu(policy, {"ai-platform": 4, "nlp": 7}))
    assert got["nlp"] == (-3, 3, [("ai-platform", 2), ("root", 1)], 0, 0)
    assert got["ai-platform"] == (-1, 1, [("root", 1)], 0, 0)
    assert got["root"] == (4, 0, [], 0, 0)


def test_borrowing_under_a_lending_parent_draws_on_the_grandparent(policy: CompiledPolicy) -> None:
    # etl 6: T −2 ≥ −2, borrowed 2. data's idle 2 (own room 6 − 4) is within its lend 3, so it is root's
    # to give (as borrowing.check names it): data T 2 − 2 = 0, share 0, borrows nothing; etl's 2 from root.
    got = summary(gpu(policy, {"etl": 6}))
    assert got["etl"] == (-2, 2, [("root", 2)], 0, 0)
    assert got["data"] == (0, 0, [], 0, 0)


def test_a_parents_own_workloads_hold_a_childs_lend(policy: CompiledPolicy) -> None:
    # root's own 5 (own room 2, so 3 beyond it): root T 2 − 5 + 0 + 3 = 0. data offers min(3, 2 + 1) = 3,
    # all held by root's workloads (root's T cannot drop): lent out 3. etl's 1 is part of that offer, and
    # data's slack is min(3 − 0, max(0, 3 − 3) + 0) = 0: etl's 1 is lent out too. Root borrows nothing.
    got = summary(gpu(policy, {"root": 5}))
    assert got["data"] == (3, 0, [], 3, 0)
    assert got["etl"] == (4, 0, [], 1, 0)
    assert got["root"] == (0, 0, [], 0, 0)


def test_a_lender_using_part_of_its_lendable_part_lends_only_the_rest(policy: CompiledPolicy) -> None:
    # vision 3 (lend 2, guarantee 2): T 1, offer min(2, 1) = 1. With root 2, ai-platform 4 and nlp 5 (T −1,
    # borrowed 1 at ai-platform: own room 0 + vision's 1): ai-platform T 0 and root T 0, so vision's 1 is lent out.
    got = summary(gpu(policy, {"root": 2, "ai-platform": 4, "vision": 3, "nlp": 5, "data": 2, "etl": 4}))
    assert got["vision"] == (1, 0, [], 1, 0)
    assert got["nlp"] == (-1, 1, [("ai-platform", 1)], 0, 0)


def test_use_beyond_hard_plus_borrow_is_over_not_borrowed(policy: CompiledPolicy) -> None:
    # nlp 9 (warn mode, or its quota shrank): T 4 − 9 = −5 < −3. Its share stops at −3: borrowed 3, over 2.
    # vision 5 with borrow 0: T −1 < 0, share min(2, max(−1, 0)) = 0: borrowed 0, over 1.
    got = summary(gpu(policy, {"nlp": 9, "vision": 5}))
    assert got["nlp"][1:] == (3, [("ai-platform", 3)], 0, 2)
    assert got["vision"][1:] == (0, [], 0, 1)


def test_unfunded_borrowing_names_no_pool(policy: CompiledPolicy) -> None:
    # root 2, data 2, etl 4 (root T 0 before ai-platform); ai-platform 4, nlp 7: nlp T −3, ai-platform
    # T 0 + 2 − 3 = −1 passes 1 to root, whose T 2 − 2 − 1 + 0 = −1: root is over by 1, and nlp's 3 are
    # funded 2 at ai-platform, 1 nowhere (root's pool is empty): borrowed 3, draws 2.
    got = summary(gpu(policy, {"root": 2, "data": 2, "etl": 4, "ai-platform": 4, "nlp": 7}))
    assert got["nlp"] == (-3, 3, [("ai-platform", 2)], 0, 0)
    assert got["root"] == (-1, 0, [], 0, 1)


def test_figures_cover_only_keys_someone_lends_or_borrows(policy: CompiledPolicy) -> None:
    # LENDING names gpu (everyone) and A100 (vision lends 4, nlp borrows 4).
    assert lending_keys(LENDING) == [GPU, A100]
    table = {"nlp": {A100: 6 * N}}
    rows = figures(policy.groups, LENDING, lambda g: table.get(g, {}))
    # A100: nlp T 4 − 6 = −2, borrowed 2; ai-platform's own A100 room 8 − 8 = 0, vision offers 4: funded there.
    assert rows["nlp"][A100].borrowed == 2 * N
    assert rows["nlp"][A100].draws == (("ai-platform", 2 * N),)
    assert set(rows["root"]) == {GPU, A100}


# The figures and `borrowing.check` are one rule read two ways: checked on any usage of the tree.
STATES = st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 9))


@settings(max_examples=200, deadline=None)
@given(STATES, st.sampled_from(GROUPS), st.integers(1, 8))
def test_property_an_admissions_draws_are_what_its_group_borrows_more(state: dict[str, int], group: str,
                                                                       need: int) -> None:
    # What check says a fitting request borrows (its draws, summed) is exactly the rise of the group's
    # `borrowed`: its own lendable part taken back is not borrowing in either.
    policy = compile_sources(load_text(POLICY, "tree.quota"))
    table = {g: {GPU: n * N} for g, n in state.items()}
    rows = gpu(policy, state)
    assert {g: r.balance for g, r in rows.items()} == {
        g: balance(policy.groups, LENDING, lambda x: table.get(x, {}), g, GPU) for g in rows}  # the rule's T
    got = ask(policy, state, group, need)
    if not got.fits:
        return
    before = gpu(policy, state)[group].borrowed
    after = gpu(policy, {**state, group: state.get(group, 0) + need})[group].borrowed
    assert sum(d.amount for d in got.borrowed) == after - before


@settings(max_examples=200, deadline=None)
@given(STATES, st.sampled_from(["vision", "data", "etl"]))
def test_property_lent_out_is_what_a_lender_cannot_take_back(state: dict[str, int], lender: str) -> None:
    # A lender using all its idle room (its T, down to 0) fits iff nothing of its lendable part is lent out.
    policy = compile_sources(load_text(POLICY, "tree.quota"))
    row = gpu(policy, state)[lender]
    room = row.balance // N
    if room <= 0:
        return
    assert ask(policy, state, lender, room).fits == (row.lent_out == 0)
