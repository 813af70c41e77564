"""Reclaim at admission (issue 29 item 3), by hand on a three-level tree.

    root          gpu 8                    own 8 − 8 = 0
    └─ ai         gpu 8                    own 8 − (4 + 4) = 0, borrows nothing
       ├─ vision  gpu 4  lend 4
       └─ nlp     gpu 4  borrow 4

Shares are min(lend, max(T, −borrow)). With nothing used: T(vision) 4, share
min(4, 4) = 4; T(nlp) 4, share min(0, 4) = 0; T(ai) 0 + 4 + 0 = 4.

nlp runs job-a (6 GPUs) and job-b (2 GPUs), 8 in all: T(nlp) = 4 − 8 = −4,
share max(−4, −4) = −4; T(ai) = 0 + 4 − 4 = 0 ≥ 0 (its floor: it borrows
nothing). Each borrowed from ai: job-a 6 − 4 = 2, job-b 2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from quotalang.borrowing import Draw
from quotalang.compiler import compile_sources
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.reclaimable import Borrower, Reclaim, choose, without
from tests.quotalang.test_borrowing import GPU, N

POLICY = """\
import "quotalang:policies/core.quota"
settings {
  group label "g"
}
group root {
  requests.nvidia.com/gpu  8
}
group ai in root {
  requests.nvidia.com/gpu  8
}
group vision in ai {
  requests.nvidia.com/gpu  4 lend 4
}
group nlp in ai {
  requests.nvidia.com/gpu  4 borrow 4
}
"""

SUSPEND = Reclaim("spec.suspend", 0, 100)


def borrower(name: str, gpus: int, drawn: int, *, priority: int = 0, admitted: float = 0.0,
             reclaim: Reclaim | None = None, reclaiming: bool = False) -> Borrower:
    how = reclaim if reclaim is not None else Reclaim("spec.suspend", priority, 100)
    return Borrower(("nlp", name), f"default/{name}", "nlp", (Draw("ai", GPU, drawn * N),), {GPU: gpus * N}, how,
                    admitted, reclaiming)


JOB_A = borrower("job-a", 6, 2, admitted=1.0)
JOB_B = borrower("job-b", 2, 2, admitted=2.0)  # the newer


class Source:
    """Usage per group and the store's borrower records, as an in-process store hands them to a decision."""

    def __init__(self, used: Mapping[str, int], borrowers: Sequence[Borrower]) -> None:
        self._used = used
        self._borrowers = tuple(borrowers)

    def used(self, group: str) -> Mapping[str, int]:
        return {GPU: self._used.get(group, 0) * N}

    def cash_used(self, group: str) -> Mapping[str, int]:
        return {}

    def borrowers(self) -> tuple[Borrower, ...]:
        return self._borrowers


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "tree.quota"))


def pick(policy: CompiledPolicy, need: int, borrowers: Sequence[Borrower], used: Mapping[str, int] | None = None
         ) -> tuple[str, ...] | None:
    source = Source(used if used is not None else {"nlp": 8}, borrowers)
    found = choose(policy.groups, policy.lending, source.used, "vision", {GPU: need * N}, borrowers)
    return None if found is None else tuple(b.name for b in found)


def test_one_gpu_back_takes_the_newest_borrower(policy: CompiledPolicy) -> None:
    # vision asks 1: T(vision) 3, share 3; T(ai) = 3 − 4 = −1 < 0. Newest first, job-b: nlp uses 6,
    # T(nlp) −2, share −2; T(ai) = 3 − 2 = 1 ≥ 0: job-b alone.
    assert pick(policy, 1, [JOB_A, JOB_B]) == ("default/job-b",)


def test_the_fewest_that_fit_put_back_what_is_not_needed(policy: CompiledPolicy) -> None:
    # vision asks 3: T(vision) 1, share 1; T(ai) = 1 − 4 = −3. job-b out: T(nlp) −2, T(ai) 1 − 2 = −1, short;
    # job-a out too: nlp uses 0, share 0, T(ai) 1: fits. job-b put back: nlp uses 2, T 2, share min(0, 2) = 0,
    # T(ai) = 1 ≥ 0 still: job-a alone.
    assert pick(policy, 3, [JOB_A, JOB_B]) == ("default/job-a",)


def test_lowest_priority_before_newest(policy: CompiledPolicy) -> None:
    # job-a priority 10, job-b 50: job-a goes first. vision asks 1: job-a out, nlp uses 2, share 0, T(ai) 3.
    low_a, high_b = borrower("job-a", 6, 2, priority=10, admitted=1.0), borrower("job-b", 2, 2, priority=50,
                                                                                   admitted=2.0)
    assert pick(policy, 1, [high_b, low_a]) == ("default/job-a",)


def test_not_enough_reclaimable_is_none(policy: CompiledPolicy) -> None:
    # job-a cannot be given back (priority 1000, no suspend rule); vision asks 3: job-b out leaves
    # T(ai) = 1 − 2 = −1: short, and nothing else may be taken.
    stuck = borrower("job-a", 6, 2, admitted=1.0, reclaim=Reclaim(None, 1000, 100))
    assert pick(policy, 3, [stuck, JOB_B]) is None
    # One already being reclaimed is never named twice.
    assert pick(policy, 1, [JOB_A, borrower("job-b", 2, 2, admitted=2.0, reclaiming=True)]) == ("default/job-a",)


def test_a_group_no_longer_borrowing_is_never_a_candidate(policy: CompiledPolicy) -> None:
    # job-a's record says it borrowed, but nlp now uses 4 (its guarantee): T(nlp) 0, not borrowing.
    # vision asks 4 more with 1 of its own used: T(vision) −1 < 0 its floor: short at vision itself, and
    # taking nlp's 4 (within its hard) would take a guarantee: nothing is chosen.
    assert pick(policy, 4, [JOB_A], used={"nlp": 4, "vision": 1}) is None


def test_without_takes_the_borrowers_usage_out_of_their_group() -> None:
    used = without(Source({"nlp": 8}, ()).used, [JOB_A])
    assert used("nlp") == {GPU: 2 * N} and used("vision") == {GPU: 0}


def gpu_job(name: str, group: str, gpus: int) -> dict[str, object]:
    amount = {"nvidia.com/gpu": str(gpus)}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default",
                                                                  "labels": {"g": group}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "resources": {"requests": amount,
                                                                                        "limits": amount}}]}}}}


def test_the_decision_names_the_borrowers_it_reclaims(policy: CompiledPolicy) -> None:
    decision = evaluate(policy, gpu_job("mine", "vision", 3), usage=Source({"nlp": 8}, [JOB_A, JOB_B]))
    assert decision.allowed and decision.reclaims == (JOB_A,)
    assert decision.touches == ("ai",)
    assert f"reclaims default/job-a (2 of {GPU} borrowed by root/ai/nlp)" in decision.explanation()
    assert decision.as_json()["reclaims"] == [{"name": "default/job-a", "group": "nlp", "how": "suspend spec.suspend"}]
    # A dry run says the same and reserves nothing; a store would mark job-a only for a real admission.
    assert evaluate(policy, gpu_job("mine", "vision", 3), usage=Source({"nlp": 8}, [JOB_A, JOB_B]),
                    dry_run=True).reclaims == (JOB_A,)


def test_borrowers_being_reclaimed_count_as_gone(policy: CompiledPolicy) -> None:
    # job-a (6) is being reclaimed: nlp counts 2, T(nlp) 2, share 0, T(ai) 4 − vision's. vision asks 4 more:
    # T(vision) 0, share 0, T(ai) 0 ≥ 0: fits with no further reclaim.
    taken = borrower("job-a", 6, 2, admitted=1.0, reclaiming=True)
    decision = evaluate(policy, gpu_job("mine", "vision", 4), usage=Source({"nlp": 8}, [taken, JOB_B]))
    assert decision.allowed and decision.reclaims == () and decision.borrowed == ()


def test_denied_naming_who_borrows_when_nothing_can_be_reclaimed(policy: CompiledPolicy) -> None:
    stuck = borrower("job-a", 6, 2, admitted=1.0, reclaim=Reclaim(None, 1000, 100))
    decision = evaluate(policy, gpu_job("mine", "vision", 3), usage=Source({"nlp": 8}, [stuck, JOB_B]))
    assert not decision.allowed and decision.reclaims == ()
    # T(ai) = 1 − 4 = −3: 3 short at root/ai (floor 0).
    assert ("3 short at root/ai, which may borrow 0; borrowed there by default/job-a (2, root/ai/nlp, not "
            "reclaimable), default/job-b (2, root/ai/nlp, suspendable)") in decision.message


def test_a_request_beyond_its_own_hard_never_reclaims(policy: CompiledPolicy) -> None:
    # vision asks 5, more than its hard 4: it would borrow itself (vision borrows 0): denied, nothing named.
    decision = evaluate(policy, gpu_job("mine", "vision", 5), usage=Source({"nlp": 8}, [JOB_A, JOB_B]))
    assert not decision.allowed and decision.reclaims == ()


def test_a_borrower_with_no_suspend_rule_is_deleted_only_with_reclaim_by_delete(policy: CompiledPolicy) -> None:
    # job-a is a priority-0 Deployment (no suspend rule): reclaimable by deletion alone. vision asks 3: only
    # job-a's 6 back make room (see the fewest case). Without `reclaim by delete` it is not chosen: denied.
    deleted = borrower("job-a", 6, 2, admitted=1.0, reclaim=Reclaim(None, 0, 100))
    source = Source({"nlp": 8}, [deleted, JOB_B])
    assert choose(policy.groups, policy.lending, source.used, "vision", {GPU: 3 * N}, [deleted, JOB_B]) is None
    refused = evaluate(policy, gpu_job("mine", "vision", 3), usage=source)
    assert not refused.allowed and "default/job-a (2, root/ai/nlp, deletable with `reclaim by delete`)" in \
        refused.message
    deleting = compile_sources(load_text(POLICY.replace('group label "g"\n', 'group label "g"\n  reclaim by delete\n'),
                                         "tree.quota"))
    assert deleting.settings.reclaim_delete and not policy.settings.reclaim_delete
    decision = evaluate(deleting, gpu_job("mine", "vision", 3), usage=source)
    assert decision.allowed and decision.reclaims == (deleted,)
    assert decision.as_json()["reclaims"] == [{"name": "default/job-a", "group": "nlp", "how": "delete"}]
