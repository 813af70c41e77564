"""The balance rule (issue 29) by hand, on a three-level tree that lends and borrows at several levels.

Every expected number is worked out in the case's comment from the tree below,
never read off the code under test. Units: whole GPUs (`N` nanos each).

    root            gpu 20  A100 12                        own gpu 20 − (12 + 6) = 2, A100 12 − 12 = 0
    ├─ ai-platform  gpu 12  A100  8   borrow gpu 4         own gpu 12 − (4 + 4) = 4, A100 0
    │  ├─ vision    gpu  4  A100  4   lend gpu 2, lend A100 4
    │  └─ nlp       gpu  4  A100  4   borrow gpu 3, borrow A100 4
    └─ data         gpu  6  A100  4   lend gpu 3           own gpu 6 − 4 = 2, A100 4 − 2 = 2
       └─ etl       gpu  4  A100  2   lend gpu 1, borrow gpu 2

With nothing used, gpu balances (T) and shares (min(lend, max(T, −borrow))):
vision T 4 share min(2, 4) = 2; nlp T 4 share min(0, 4) = 0;
ai-platform T 4 − 0 + 2 + 0 = 6, share min(0, 6) = 0;
etl T 4 share min(1, 4) = 1; data T 2 + 1 = 3, share min(3, 3) = 3;
root T 2 + 0 + 3 = 5.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quotalang.borrowing import NO_LENDING, Check, Draw, Lending, Short, balance, check, may_draw_on
from quotalang.compiler import compile_sources
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy

N = 10**9
GPU = "requests.nvidia.com/gpu"
A100 = "requests.nvidia.com/gpu.A100"

POLICY = """\
settings {
  group label "g"
}

group root {
  requests.nvidia.com/gpu        20
  requests.nvidia.com/gpu.A100   12
}

group ai-platform in root {
  requests.nvidia.com/gpu        12
  requests.nvidia.com/gpu.A100    8
}

group vision in ai-platform {
  requests.nvidia.com/gpu         4
  requests.nvidia.com/gpu.A100    4
}

group nlp in ai-platform {
  requests.nvidia.com/gpu         4
  requests.nvidia.com/gpu.A100    4
}

group data in root {
  requests.nvidia.com/gpu         6
  requests.nvidia.com/gpu.A100    4
}

group etl in data {
  requests.nvidia.com/gpu         4
  requests.nvidia.com/gpu.A100    2
}
"""

LENDING = Lending(
    lend={"vision": {GPU: 2 * N, A100: 4 * N}, "data": {GPU: 3 * N}, "etl": {GPU: 1 * N}},
    borrow={"ai-platform": {GPU: 4 * N}, "nlp": {GPU: 3 * N, A100: 4 * N}, "etl": {GPU: 2 * N}},
)


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "tree.quota"))


def ask(
    policy: CompiledPolicy,
    used: Mapping[str, int],
    group: str,
    needs: Mapping[str, int] | int,
    lending: Lending = LENDING,
    used_a100: Mapping[str, int] | None = None,
) -> Check:
    """`check` with usage and needs in whole GPUs (`needs` an int: that many of the gpu key)."""
    table = {g: {GPU: n * N} for g, n in used.items()}
    for g, n in (used_a100 or {}).items():
        table.setdefault(g, {})[A100] = n * N
    wanted = {GPU: needs * N} if isinstance(needs, int) else {k: v * N for k, v in needs.items()}
    return check(policy.groups, lending, lambda g: table.get(g, {}), group, wanted)


def draws(*rows: tuple[str, int] | tuple[str, str, int]) -> tuple[Draw, ...]:
    return tuple(Draw(r[0], GPU, r[1] * N) if len(r) == 2 else Draw(r[0], r[1], r[2] * N)  # type: ignore[misc]
                 for r in rows)


def test_balances_at_rest(policy: CompiledPolicy) -> None:
    # The module docstring's figures: root 5, ai-platform 6, data 3, leaves their hard.
    used = lambda g: {}  # noqa: E731
    got = {g: balance(policy.groups, LENDING, used, g, GPU) // N for g in policy.groups}
    assert got == {"root": 5, "ai-platform": 6, "vision": 4, "nlp": 4, "data": 3, "etl": 4}


def test_within_a_borrowers_guarantee_touches_it_alone(policy: CompiledPolicy) -> None:
    # nlp +4: T 4 → 0 ≥ −3; share min(0, max(0, −3)) = 0 before and after: nothing passes up.
    assert ask(policy, {}, "nlp", 4) == Check(True, ())


def test_within_a_lenders_guarantee_touches_it_alone(policy: CompiledPolicy) -> None:
    # vision +2 (guarantee 4 − 2): T 4 → 2; share min(2, 4) = 2 → min(2, 2) = 2: nothing passes up.
    assert ask(policy, {}, "vision", 2) == Check(True, ())


def test_a_lender_takes_back_its_unborrowed_lendable_part(policy: CompiledPolicy) -> None:
    # vision +4: T 4 → 0, share 2 → 0, passes 2 to ai-platform: T 6 → 4 ≥ −4, its share 0 → 0.
    # The 2 are vision's own lendable part (T between 0 and lend 2): it touches ai-platform, borrows nothing.
    assert ask(policy, {}, "vision", 4) == Check(True, ("ai-platform",))


def test_a_group_that_may_not_borrow_stops_at_its_hard(policy: CompiledPolicy) -> None:
    # vision +5: T 4 → −1 < 0 (vision borrows 0), however much ai-platform has. Followed up (warn mode
    # would admit it): share min(2, max(−1, 0)) = 0, passes 2 — its own lendable part — to ai-platform.
    assert ask(policy, {}, "vision", 5) == Check(False, ("ai-platform",), (), (Short("vision", GPU, -1 * N, 0),))


def test_borrows_from_the_parents_own_room(policy: CompiledPolicy) -> None:
    # nlp +5: T 4 → −1 ≥ −3, share 0 → −1: passes 1. ai-platform T 6 → 5 ≥ −4, share min(0, ·) stays 0:
    # it absorbs the 1 from its own room (12 − 8 carved = 4, unused).
    assert ask(policy, {}, "nlp", 5) == Check(True, ("ai-platform",), draws(("ai-platform", 1)))


def test_borrows_a_siblings_lend(policy: CompiledPolicy) -> None:
    # ai-platform's own 4 used: its T = 4 − 4 + 2 (vision's share) + 0 = 2. nlp +6: T 4 → −2, passes 2;
    # ai-platform T 2 → 0 ≥ −4, share stays 0: the 2 are vision's lent 2, drawn at ai-platform.
    assert ask(policy, {"ai-platform": 4}, "nlp", 6) == Check(True, ("ai-platform",), draws(("ai-platform", 2)))


def test_beyond_the_siblings_lend_borrows_through_two_levels(policy: CompiledPolicy) -> None:
    # As above, nlp +7: T 4 → −3 ≥ −3, passes 3. ai-platform T 2 → −1 ≥ −4; share 0 → −1 passes 1
    # (absorbs 2). root T 2 − 0 + 0 + 3 = 5 → 4 ≥ 0 absorbs 1.
    got = ask(policy, {"ai-platform": 4}, "nlp", 7)
    assert got == Check(True, ("ai-platform", "root"), draws(("ai-platform", 2), ("root", 1)))


def test_beyond_its_own_borrow_limit_is_denied(policy: CompiledPolicy) -> None:
    # nlp +8: T 4 → −4 < −3 (nlp borrows at most 3), whatever its ancestors hold. Followed up as for warn
    # mode: its share stops at −3, so it passes 3, as in the case above: ai-platform absorbs 2, root 1.
    got = ask(policy, {"ai-platform": 4}, "nlp", 8)
    assert got == Check(False, ("ai-platform", "root"), draws(("ai-platform", 2), ("root", 1)),
                        (Short("nlp", GPU, -4 * N, -3 * N),))


def test_denied_at_an_ancestor_whose_borrow_is_0(policy: CompiledPolicy) -> None:
    # data's own 2 used, etl full: etl T 0, share min(1, max(0, −2)) = 0; data T 2 − 2 + 0 = 0.
    # etl +1: T 0 → −1 ≥ −2, share 0 → −1 passes 1; data T 0 → −1 < 0 (data borrows 0): denied there.
    # (data's share min(3, max(−1, 0)) stays 0: the 1 is taken at data, whose pool it overdraws.)
    got = ask(policy, {"data": 2, "etl": 4}, "etl", 1)
    assert got == Check(False, ("data",), draws(("data", 1)), (Short("data", GPU, -1 * N, 0),))


def test_borrowing_from_a_lending_parent_draws_on_the_grandparents_pool(policy: CompiledPolicy) -> None:
    # etl full: T 0, share 0. data T 2 + 0 = 2 ≤ its lend 3, so all of it is counted in root's balance:
    # share(data) 2; root T 2 + 0 + 2 = 4. etl +2: T 0 → −2 ≥ −2 passes 2; data T 2 → 0 ≥ 0,
    # share 2 → 0 passes 2 (absorbs 0); root T 4 → 2 ≥ 0 absorbs 2.
    got = ask(policy, {"etl": 4}, "etl", 2)
    assert got == Check(True, ("data", "root"), draws(("root", 2)))


# The state of the next cases: root's own 2 used, ai-platform's own 4 used, nlp 6 (2 borrowed: vision's
# lend), data's own 2 and etl's 4 used. vision T 4 share 2; nlp T −2 share −2; ai-platform T 4 − 4 + 2 − 2
# = 0, share 0; etl T 0 share 0; data T 2 − 2 + 0 = 0, share 0; root T 2 − 2 + 0 + 0 = 0.
BUSY = {"root": 2, "ai-platform": 4, "nlp": 6, "data": 2, "etl": 4}


def test_a_lenders_guarantee_holds_whatever_others_borrow(policy: CompiledPolicy) -> None:
    # vision +2 (its guarantee, 4 − 2): T 4 → 2, share 2 → 2: ai-platform's 0 and root's 0 are not touched.
    assert ask(policy, BUSY, "vision", 2) == Check(True, ())


def test_a_lender_reclaiming_what_is_borrowed_is_denied_when_nothing_above_gives(policy: CompiledPolicy) -> None:
    # vision +3: T 4 → 1, share 2 → 1 passes 1; ai-platform T 0 → −1 ≥ −4, share 0 → −1 passes 1;
    # root T 0 → −1 < 0: denied at root (nlp holds vision's lent part; reclaim is a later step).
    got = ask(policy, BUSY, "vision", 3)
    assert got == Check(False, ("ai-platform", "root"), (), (Short("root", GPU, -1 * N, 0),))


def test_a_lender_reclaiming_fits_when_its_parent_may_borrow_above(policy: CompiledPolicy) -> None:
    # BUSY with root's own use 0: root T 2. vision +3 as above, ai-platform 0 → −1 passes 1, root 2 → 1 ≥ 0.
    # The 1 is vision's own lendable part (T 4 → 1 crosses [1, 2]): taken back, not borrowed.
    got = ask(policy, {**BUSY, "root": 0}, "vision", 3)
    assert got == Check(True, ("ai-platform", "root"))


def test_a_parents_own_workloads_use_a_childs_lend(policy: CompiledPolicy) -> None:
    # data +3 (own room 2 + etl's lent 1): T 3 → 0 ≥ 0; share 3 → 0 passes 3; root T 5 → 2 ≥ 0.
    # All 3 are data's own lendable part (T within [0, 3]): nothing borrowed.
    assert ask(policy, {}, "data", 3) == Check(True, ("root",))


def test_a_root_borrows_nothing(policy: CompiledPolicy) -> None:
    # root's own 2 plus data's share 3: root +5 → T 0 fits; +6 → −1 < 0 even with a borrow 5 declared.
    lending = Lending(LENDING.lend, {**LENDING.borrow, "root": {GPU: 5 * N}})
    assert ask(policy, {}, "root", 5, lending) == Check(True, ())
    assert ask(policy, {}, "root", 6, lending) == Check(False, (), (), (Short("root", GPU, -1 * N, 0),))


def test_an_excess_beyond_hard_plus_borrow_is_not_taken_from_the_parent(policy: CompiledPolicy) -> None:
    # nlp holds 9 (warn mode: past 4 + 3): T −5, share max(−5, −3) = −3; ai-platform T 4 + 2 − 3 = 3.
    # ai-platform +7: T 3 → −4 ≥ −4; share 0 → −4 passes 4; root T 2 + 0 + 3 = 5 → 1 ≥ 0 absorbs 4.
    # (Unclamped, nlp's share −5 would leave ai-platform T 1 → −6 < −4: denied.)
    got = ask(policy, {"nlp": 9}, "ai-platform", 7)
    assert got == Check(True, ("root",), draws(("root", 4)))


def test_an_ancestors_earlier_excess_is_not_this_requests(policy: CompiledPolicy) -> None:
    # root's own use 6: T 2 − 6 + 0 + 3 = −1 < 0 already. nlp +4 stays in its guarantee: allowed;
    # vision +3 passes 1 to ai-platform (T 6 → 5, share stays 0): root's balance unchanged, allowed.
    assert ask(policy, {"root": 6}, "nlp", 4) == Check(True, ())
    assert ask(policy, {"root": 6}, "vision", 3) == Check(True, ("ai-platform",))
    # data +1 does change it: T 3 → 2, share 3 → 2 passes 1; root −1 → −2 < 0.
    assert ask(policy, {"root": 6}, "data", 1) == Check(False, ("root",), (), (Short("root", GPU, -2 * N, 0),))


def test_keys_apart_model_key_borrows_from_a_siblings_model_lend(policy: CompiledPolicy) -> None:
    # A100: vision T 4 share min(4, 4) = 4; nlp T 4 share 0; ai-platform T 0 + 4 + 0 = 4 (no A100 terms).
    # nlp +6 gpu +6 A100. gpu: T 4 → −2, passes 2, ai-platform 6 → 4 absorbs 2.
    # A100: T 4 → −2 ≥ −4, passes 2, ai-platform 4 → 2 ≥ 0 (it borrows no A100), share stays 0: absorbs 2.
    got = ask(policy, {}, "nlp", {GPU: 6, A100: 6})
    assert got == Check(True, ("ai-platform",), draws(("ai-platform", 2), ("ai-platform", A100, 2)))


def test_keys_apart_one_key_short_denies(policy: CompiledPolicy) -> None:
    # nlp +5 gpu (fits: 4 → −1, ai-platform absorbs 1) and +9 A100: T 4 → −5 < −4; its share stops at −4,
    # so ai-platform's A100 balance 4 → 0 absorbs 4.
    got = ask(policy, {}, "nlp", {GPU: 5, A100: 9})
    assert got == Check(False, ("ai-platform",), draws(("ai-platform", 1), ("ai-platform", A100, 4)),
                        (Short("nlp", A100, -5 * N, -4 * N),))


def test_a_model_lend_reaches_only_as_far_as_the_parent_that_neither_lends_nor_borrows(
    policy: CompiledPolicy,
) -> None:
    # ai-platform uses 4 of vision's A100 lend: T(ai-platform) A100 0 + 4 − 4 = 0. nlp +5 A100:
    # T 4 → −1 passes 1; ai-platform 0 → −1 < 0 (no A100 borrow): denied, though root has A100 room? none:
    # root own A100 12 − 12 = 0 either way.
    got = ask(policy, {}, "nlp", {A100: 5}, used_a100={"ai-platform": 4})
    assert got == Check(False, ("ai-platform",), draws(("ai-platform", A100, 1)),
                        (Short("ai-platform", A100, -1 * N, 0),))


def test_shrinks_and_unlimited_keys_need_no_room(policy: CompiledPolicy) -> None:
    # A negative need releases (checked never); requests.cpu is limited by nobody.
    assert ask(policy, BUSY, "nlp", -3) == Check(True, ())
    assert ask(policy, BUSY, "nlp", {"requests.cpu": 100}) == Check(True, ())


def test_without_lend_or_borrow_it_is_todays_rule(policy: CompiledPolicy) -> None:
    # ai-platform own 3 used: 3 + 8 carved + 1 = 12 ≤ 12 fits; + 2 → 13 > 12: T 12 − 8 − 3 − 2 = −1.
    assert ask(policy, {"ai-platform": 3}, "ai-platform", 1, NO_LENDING) == Check(True, ())
    got = ask(policy, {"ai-platform": 3}, "ai-platform", 2, NO_LENDING)
    assert got == Check(False, (), (), (Short("ai-platform", GPU, -1 * N, 0),))
    # nlp full: 4 + 0 + 1 > 4 though ai-platform has 4 of its own room free: no borrowing without a borrow.
    assert ask(policy, {"nlp": 4}, "nlp", 1, NO_LENDING) == Check(False, (), (), (Short("nlp", GPU, -1 * N, 0),))


def test_the_ancestors_a_group_may_draw_on(policy: CompiledPolicy) -> None:
    # nlp borrows → ai-platform, which borrows → root. vision lends → ai-platform → root.
    # etl lends and borrows → data, which lends → root. data → root. root has no parent.
    groups = policy.groups
    assert may_draw_on(groups, LENDING, "nlp") == ("root", "ai-platform")
    assert may_draw_on(groups, LENDING, "vision") == ("root", "ai-platform")
    assert may_draw_on(groups, LENDING, "etl") == ("root", "data")
    assert may_draw_on(groups, LENDING, "data") == ("root",)
    assert may_draw_on(groups, LENDING, "root") == ()
    # A group that neither lends nor borrows touches itself alone, whatever its parent does.
    assert may_draw_on(groups, Lending(borrow={"ai-platform": {GPU: N}}), "nlp") == ()
    assert all(may_draw_on(groups, NO_LENDING, g) == () for g in groups)


def test_a_draw_reads_like_the_issue() -> None:
    text = Draw("ai-platform", A100, 4 * N).describe("root/ai-platform", "4")
    assert text == "borrowed 4 of requests.nvidia.com/gpu.A100 from root/ai-platform"


# ---------------------------------------------------------------- properties
GROUPS = ["root", "ai-platform", "vision", "nlp", "data", "etl"]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(GROUPS), st.integers(0, 25)), st.sampled_from(GROUPS), st.integers(-3, 25))
def test_property_no_lending_is_exactly_the_carved_rule(used: dict[str, int], group: str, need: int) -> None:
    policy = compile_sources(load_text(POLICY, "tree.quota"))
    g = policy.groups[group]
    carved = g.carved.get(GPU, 0) // N
    fits = need <= 0 or used.get(group, 0) + carved + need <= g.hard[GPU] // N
    got = ask(policy, used, group, need, NO_LENDING)
    assert got.fits == fits
    assert got.touches == () and got.borrowed == ()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(GROUPS), st.integers(1, 6)), max_size=25))
def test_property_admitted_sequences_keep_every_subtree_within_hard_plus_borrow(
    requests: list[tuple[str, int]],
) -> None:
    # Admit requests only through `check`; afterwards every group's subtree holds at most hard + borrow
    # (a root: hard), and every leaf can still take up to its guarantee, hard − lend.
    policy = compile_sources(load_text(POLICY, "tree.quota"))
    used: dict[str, int] = {}
    for group, n in requests:
        if ask(policy, used, group, n).fits:
            used[group] = used.get(group, 0) + n

    def subtree(name: str) -> int:
        return used.get(name, 0) + sum(subtree(c) for c in policy.groups[name].children)

    for name, g in policy.groups.items():
        lend, borrow = LENDING.terms(name, GPU)
        limit = g.hard[GPU] + (borrow if g.parent is not None else 0)
        assert subtree(name) * N <= limit
        room = (g.hard[GPU] - lend) // N - used.get(name, 0)
        if not g.children and room > 0:
            assert ask(policy, used, name, room).fits
