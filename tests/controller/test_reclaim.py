"""The reclaim loop's rules, beside the real-apiserver tests (tests/e2e/test_reclaim.py): retries, deadline,
idempotency, a namesake, restart. The API is a recording fake; the store is the real memory store."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from quotalang.compiler import compile_sources
from quotalang.controller.kube.api import ApiError, Unreachable
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.controller.reclaim import Reclaimer
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from tests.asks import admit
from tests.quotalang.test_borrowing import GPU, N
from tests.quotalang.test_reclaim_choice import POLICY, gpu_job

BIG = ObjectKey("batch", "Job", "default", "job-a")
PATH = "/apis/batch/v1/namespaces/default/jobs/job-a"


class Api:
    """Answers GET with `live`, fails the first `failures` PATCH/DELETE calls; records every call."""

    def __init__(self, live: Mapping[str, Any] | None = None, failures: int = 0, status: int | None = None) -> None:
        self.live = live or {"spec": {}}
        self.failures = failures
        self.status = status
        self.calls: list[tuple[str, str, Any]] = []

    def request(self, method: str, path: str, *, body: Mapping[str, Any] | None = None,
                query: Mapping[str, Any] | None = None, timeout: float = 10.0,
                content_type: str = "application/json") -> dict[str, Any]:
        self.calls.append((method, path, body))
        if method == "GET":
            return dict(self.live)
        if method in ("PATCH", "DELETE"):
            if self.status is not None:
                raise ApiError(self.status, "Conflict", "uid precondition")
            if self.failures:
                self.failures -= 1
                raise Unreachable("connection refused")
        return {}

    def writes(self) -> list[tuple[str, str, Any]]:
        return [c for c in self.calls if c[0] in ("PATCH", "DELETE")]

    def events(self) -> list[Any]:
        return [c[2] for c in self.calls if c[0] == "POST"]


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "tree.quota"))


def marked(ledger: MemoryLedger, policy: CompiledPolicy) -> None:
    """test_borrowers' story: job-a (6) and job-b (2) borrow; vision's 3 name job-a."""
    for name, gpus in (("job-a", 6), ("job-b", 2)):
        body = gpu_job(name, "nlp", gpus)
        body["metadata"]["uid"] = f"uid-{name}"  # type: ignore[index]
        assert admit(ledger, policy, body).allowed
    assert [b.name for b in admit(ledger, policy, gpu_job("mine", "vision", 3)).reclaims] == ["default/job-a"]


def test_a_suspend_is_one_patch_with_the_uid_one_event_and_then_nothing(policy: CompiledPolicy) -> None:
    ledger, api = MemoryLedger(), Api()
    marked(ledger, policy)
    reclaimer = Reclaimer(api, ledger)
    assert reclaimer.run_once() == 1
    assert api.writes() == [("PATCH", PATH, {"spec": {"suspend": True}, "metadata": {"uid": "uid-job-a"}})]
    (event,) = api.events()
    assert (event["reason"], event["type"], event["involvedObject"]["name"]) == ("QuotaReclaimed", "Normal", "job-a")
    assert reclaimer.counts == {("nlp", "suspended"): 1}
    assert reclaimer.run_once() == 0 and len(api.calls) == 3  # a second run does nothing
    # Until the watch shows the release the record stays marked (its 6 counted as gone, not again) ...
    assert {b.name: b.reclaiming for b in ledger.borrowers()} == {"default/job-a": True, "default/job-b": False}
    ledger.observe(BIG, "nlp", {GPU: 6 * N})  # an event from before the suspend: still holding its GPUs
    assert "default/job-a" in {b.name for b in ledger.borrowers()}
    ledger.observe(BIG, "nlp", {})  # suspended: a suspended Job charges nothing
    assert [b.name for b in ledger.borrowers()] == ["default/job-b"]  # ... then it goes


def test_one_found_already_suspended_is_settled_without_a_patch_or_event(policy: CompiledPolicy) -> None:
    ledger, api = MemoryLedger(), Api(live={"spec": {"suspend": True}})  # a restart after the patch
    marked(ledger, policy)
    reclaimer = Reclaimer(api, ledger)
    assert reclaimer.run_once() == 1 and api.writes() == [] and api.events() == [] and reclaimer.counts == {}


def test_a_namesake_or_a_gone_object_is_not_reclaimed(policy: CompiledPolicy) -> None:
    ledger, api = MemoryLedger(), Api(status=409)  # the uid precondition failed: another object now
    marked(ledger, policy)
    reclaimer = Reclaimer(api, ledger)
    assert reclaimer.run_once() == 1 and api.events() == [] and reclaimer.counts == {("nlp", "gone"): 1}


def test_failures_back_off_and_give_up_at_the_deadline(policy: CompiledPolicy) -> None:
    now = [0.0]
    ledger, api = MemoryLedger(), Api(failures=100)
    marked(ledger, policy)
    reclaimer = Reclaimer(api, ledger, deadline=10.0, backoff=1.0, cap=4.0, clock=lambda: now[0])
    # Tries at 0, then after 1, 2, 4, 4 s (cap): 0, 1, 3, 7, 11 — the one at 11 is past the 10 s deadline.
    tried_at = []
    for tick in range(12):
        now[0] = float(tick)
        before = len(api.writes())
        reclaimer.run_once()
        if len(api.writes()) > before:
            tried_at.append(tick)
    assert tried_at == [0, 1, 3, 7, 11]
    assert reclaimer.counts == {("nlp", "failed"): 1}
    (event,) = api.events()
    assert event["type"] == "Warning" and event["reason"] == "QuotaReclaimFailed"
    # given up: unmarked, so its usage counts again and a later lender may name it anew
    assert {b.name: b.reclaiming for b in ledger.borrowers()} == {"default/job-a": False, "default/job-b": False}


def test_a_retry_that_succeeds_counts_once(policy: CompiledPolicy) -> None:
    now = [0.0]
    ledger, api = MemoryLedger(), Api(failures=1)
    marked(ledger, policy)
    reclaimer = Reclaimer(api, ledger, backoff=1.0, clock=lambda: now[0])
    assert reclaimer.run_once() == 0
    assert reclaimer.run_once() == 0  # not due yet (backoff 1 s)
    now[0] = 1.0
    assert reclaimer.run_once() == 1 and reclaimer.counts == {("nlp", "suspended"): 1}


def test_deletion_for_a_kind_without_suspend(policy: CompiledPolicy) -> None:
    deleting = compile_sources(load_text(POLICY.replace('group label "g"\n', 'group label "g"\n  reclaim by delete\n')
                                         .replace('import "quotalang:policies/core.quota"\n', "")
                                         + 'kind batch/v1 Job {\n  creates v1 Pod\n  pods {\n'
                                           '    template spec.template\n  }\n}\n', "tree.quota"))
    ledger, api = MemoryLedger(), Api()
    marked(ledger, deleting)
    reclaimer = Reclaimer(api, ledger)
    assert reclaimer.run_once() == 1
    assert api.writes() == [("DELETE", PATH, {"apiVersion": "v1", "kind": "DeleteOptions",
                                              "propagationPolicy": "Background",
                                              "preconditions": {"uid": "uid-job-a"}})]
    assert reclaimer.counts == {("nlp", "deleted"): 1}


def test_the_marks_survive_a_restart(tmp_path: Path, policy: CompiledPolicy) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite3")
    marked(ledger, policy)
    ledger.close()
    reopened, api = SqliteLedger(tmp_path / "l.sqlite3"), Api()
    assert Reclaimer(api, reopened).run_once() == 1 and len(api.writes()) == 1
    reopened.observe(BIG, "nlp", {})
    reopened.close()
    assert [b.name for b in SqliteLedger(tmp_path / "l.sqlite3").borrowers()] == ["default/job-b"]


def test_in_a_fleet_each_borrower_is_reclaimed_through_its_own_members_client(policy: CompiledPolicy) -> None:
    # `marked`'s story across a fleet: job-a (6) and job-b (2) borrow in member b (the cluster is the
    # identity's fifth field), vision's 3 are asked in member a and name job-a. Every member's Controller
    # runs a Reclaimer over the one ledger with its own client: only b's patches job-a, in b. (Before,
    # a's would have patched a namesake in a, or read its 404 as "gone" and dropped the record.)
    ledger = MemoryLedger()
    for name, gpus in (("job-a", 6), ("job-b", 2)):
        body = gpu_job(name, "nlp", gpus)
        body["metadata"]["uid"] = f"uid-{name}"  # type: ignore[index]
        assert admit(ledger, policy, body, identity=ObjectKey("batch", "Job", "default", name, "b")).allowed
    lender = admit(ledger, policy, gpu_job("mine", "vision", 3), identity=ObjectKey("batch", "Job", "default",
                                                                                     "mine", "a"))
    assert [b.name for b in lender.reclaims] == ["default/job-a"]
    in_a, in_b = Api(), Api()
    member_a, member_b = Reclaimer(in_a, ledger, cluster="a"), Reclaimer(in_b, ledger, cluster="b")
    assert member_a.run_once() == 0 and in_a.calls == [] and member_a.counts == {}
    assert member_b.run_once() == 1
    assert in_b.writes() == [("PATCH", PATH, {"spec": {"suspend": True}, "metadata": {"uid": "uid-job-a"}})]
    (event,) = in_b.events()
    assert (event["reason"], event["involvedObject"]["name"]) == ("QuotaReclaimed", "job-a")
    assert member_b.counts == {("nlp", "suspended"): 1}
    assert {b.name: b.reclaiming for b in ledger.borrowers()} == {"default/job-a": True, "default/job-b": False}
    ledger.observe(ObjectKey("batch", "Job", "default", "job-a", "b"), "nlp", {})  # b's watch: suspended
    assert [b.name for b in ledger.borrowers()] == ["default/job-b"]
    assert member_a.run_once() == 0 and member_b.run_once() == 0 and in_a.calls == []
