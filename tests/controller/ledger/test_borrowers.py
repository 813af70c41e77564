"""Who borrows, as the in-process stores record it (issue 29 items 2-3), and reclaim at admission through them.

The tree and its arithmetic are test_reclaim_choice's: root 8 ⊃ ai 8 ⊃ vision 4 (lend 4), nlp 4 (borrow 4).
nlp's job-a (6 GPUs) borrows 2 at ai, job-b (2) 2 more; vision's 3 then fit only with job-a given back.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quotalang.borrowing import Draw
from quotalang.compiler import compile_sources
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.server.engine import ask_for
from tests.asks import admit
from tests.controller.ledger.test_ledger_contract import (  # the fixture is used by name
    eager_thread_switching,  # noqa: F401
    run_together,
    slow,
)
from tests.quotalang.test_reclaim_choice import GPU, POLICY, gpu_job

N = 10**9
Store = MemoryLedger | SqliteLedger


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "tree.quota"))


@pytest.fixture(params=["memory", "sqlite", "reconciled"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    ticks = iter(range(100, 10_000))
    clock: Any = lambda: float(next(ticks))  # noqa: E731 - every admission a second later
    if request.param == "memory":
        yield MemoryLedger(clock=clock)
    elif request.param == "reconciled":
        yield MemoryLedger(standalone=False, clock=clock, reservation_ttl=10**6)
    else:
        ledger = SqliteLedger(tmp_path / "l.sqlite3", clock=clock)
        yield ledger
        ledger.close()


def key(name: str) -> ObjectKey:
    return ObjectKey("batch", "Job", "default", name)


def borrowing(ledger: Store, policy: CompiledPolicy) -> None:
    """nlp runs job-a (6) and job-b (2): both borrow 2 at ai (test_reclaim_choice's arithmetic)."""
    for name, gpus in (("job-a", 6), ("job-b", 2)):
        decision = admit(ledger, policy, gpu_job(name, "nlp", gpus))
        assert decision.allowed and decision.borrowed == (Draw("ai", GPU, 2 * N),)


def test_every_borrowing_admission_is_recorded_with_how_it_is_given_back(store: Store, policy: CompiledPolicy
                                                                         ) -> None:
    assert admit(store, policy, gpu_job("within", "nlp", 0)).allowed  # borrows nothing: no record
    borrowing(store, policy)
    records = {b.name: b for b in store.borrowers()}
    assert set(records) == {"default/job-a", "default/job-b"}
    a = records["default/job-a"]
    assert (a.ref, a.group, a.draws, dict(a.usage)) == (key("job-a"), "nlp", (Draw("ai", GPU, 2 * N),),
                                                        {GPU: 6 * N, "pods": N, "count/pods": N})
    assert (a.reclaim.how, a.reclaim.priority, a.reclaiming) == ("suspend spec.suspend", 0, False)
    assert a.admitted < records["default/job-b"].admitted  # job-b came later
    store.forget(key("job-b"))  # released when the object goes
    assert [b.name for b in store.borrowers()] == ["default/job-a"]


def test_a_lender_within_its_hard_is_admitted_naming_whom_it_reclaims(store: Store, policy: CompiledPolicy) -> None:
    borrowing(store, policy)
    decision = admit(store, policy, gpu_job("mine", "vision", 3))
    assert decision.allowed and [b.name for b in decision.reclaims] == ["default/job-a"]
    assert f"reclaims default/job-a (2 of {GPU} borrowed by root/ai/nlp)" in decision.explanation()
    marked = {b.name: b.reclaiming for b in store.borrowers()}
    assert marked == {"default/job-a": True, "default/job-b": False}
    # job-a counts as gone: nlp 2, T(nlp) 2, share 0; vision 3 + 1 = 4, share 0; T(ai) 0: fits, no reclaim.
    more = admit(store, policy, gpu_job("more", "vision", 1))
    assert more.allowed and more.reclaims == ()
    # vision is at its hard 4 now: one more is beyond it and never reclaims (it would borrow, and may not).
    assert not admit(store, policy, gpu_job("too-many", "vision", 1)).allowed


def test_when_nothing_can_be_reclaimed_it_is_denied_naming_who_borrows(store: Store) -> None:
    # nlp in warn mode admits a pod of priority 1000 beyond its hard (warned: it may not borrow); it is
    # recorded all the same, as not reclaimable. Pods: 6 GPUs, borrowing 2 at ai, then 2 more.
    warned = compile_sources(load_text(POLICY.replace("group nlp in ai {\n", "group nlp in ai {\n  mode warn\n"),
                                       "tree.quota"))
    for name, gpus in (("pod-a", 6), ("pod-b", 2)):
        body = gpu_job(name, "nlp", gpus)["spec"]["template"]  # type: ignore[index]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default",
                                                                "labels": {"g": "nlp"}},
               "spec": {**body["spec"], "priority": 1000}}
        decision = admit(store, warned, pod)
        assert decision.allowed and any("only reclaimable workloads may borrow" in w for w in decision.warnings)
    assert sorted((b.name, b.reclaim.reclaimable) for b in store.borrowers()) == [
        ("default/pod-a", False), ("default/pod-b", False)]
    # vision asks 3 within its hard: T(ai) = 1 − 4 = −3, and neither borrower can be given back.
    denied = admit(store, warned, gpu_job("mine", "vision", 3))
    assert not denied.allowed and denied.reclaims == ()
    assert ("3 short at root/ai, which may borrow 0; borrowed there by default/pod-a (2, root/ai/nlp, not "
            "reclaimable), default/pod-b (2, root/ai/nlp, not reclaimable)") in denied.message
    assert not any(b.reclaiming for b in store.borrowers())


def test_records_survive_a_restart(tmp_path: Path, policy: CompiledPolicy) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = SqliteLedger(path)
    borrowing(ledger, policy)
    assert admit(ledger, policy, gpu_job("mine", "vision", 3)).allowed
    before = sorted((b.name, b.reclaiming, b.draws, b.reclaim, b.admitted) for b in ledger.borrowers())
    ledger.close()
    reopened = SqliteLedger(path)
    after = sorted((b.name, b.reclaiming, b.draws, b.reclaim, b.admitted) for b in reopened.borrowers())
    assert after == before and len(after) == 2
    # after the restart the one being reclaimed is still counted as gone, and still not named again
    assert admit(reopened, policy, gpu_job("more", "vision", 1)).reclaims == ()
    reopened.forget(key("job-a"))
    reopened.close()
    assert [b.name for b in SqliteLedger(path).borrowers()] == ["default/job-b"]


def test_a_schema_2_file_without_the_table_gains_it_and_a_stale_record_is_dropped(tmp_path: Path,
                                                                                policy: CompiledPolicy) -> None:
    path = tmp_path / "l.sqlite3"
    ledger = SqliteLedger(path)
    borrowing(ledger, policy)
    ledger.close()
    db = sqlite3.connect(path)
    # a binary that predates the table forgot job-b without deleting its record
    db.execute("DELETE FROM objects WHERE name = 'job-b'")
    db.commit()
    db.close()
    assert [b.name for b in SqliteLedger(path).borrowers()] == ["default/job-a"]  # the stale one dropped
    fresh = tmp_path / "old.sqlite3"
    SqliteLedger(fresh).close()
    db = sqlite3.connect(fresh)
    db.execute("DROP TABLE borrowers")
    db.commit()
    db.close()
    reopened = SqliteLedger(fresh)
    borrowing(reopened, policy)
    assert len(reopened.borrowers()) == 2
    reopened.close()


# The three-level tree with two more lenders like vision (ai 16 = 4 × 4) and nlp borrowing up to 8.
LENDERS = "".join(f"group {name} in ai {{\n  requests.nvidia.com/gpu  4 lend 4\n}}\n" for name in ("speech", "audio"))
RACE_POLICY = (POLICY.replace("requests.nvidia.com/gpu  8", "requests.nvidia.com/gpu  16")
               .replace("4 borrow 4", "4 borrow 8").replace("group nlp in ai {", LENDERS + "group nlp in ai {"))


@pytest.mark.usefixtures("eager_thread_switching")
def test_lenders_racing_to_take_back_name_each_borrower_once(store: Store) -> None:
    # nlp's job-a 6 and job-b 6: 12 of its 4, borrowing 8 of the 12 the three lenders lend. T(ai) = 12 − 8 = 4.
    # Six requests of 2 (two per lender) race: each takes 2 off the lenders' shares. In any order: the first two
    # fit (T(ai) 4 → 0), the third needs one job back (6: T(nlp) −2, T(ai) 6 − 2 = 4), the fourth and fifth
    # fit (2, 0), the sixth needs the other (T(nlp) 4, share 0, T(ai) 0). All six admitted; each job named once.
    race = compile_sources(load_text(RACE_POLICY, "race.quota"))
    for name in ("job-a", "job-b"):
        assert admit(store, race, gpu_job(name, "nlp", 6)).allowed
    start = threading.Barrier(6)
    named: list[str] = []
    allowed: list[bool] = []

    def lend_back(i: int) -> None:
        ask = ask_for(race, gpu_job(f"l{i}", ("vision", "speech", "audio")[i % 3], 2), "CREATE")
        start.wait()
        decision = store.reserve(dataclasses.replace(ask, decide=slow(ask.decide)))
        allowed.append(decision.allowed)
        named.extend(b.name for b in decision.reclaims)

    run_together(lend_back, 6)
    assert allowed == [True] * 6
    assert sorted(named) == ["default/job-a", "default/job-b"]
    assert all(b.reclaiming for b in store.borrowers())
    # Nothing is left to take back: a seventh lender request (vision 4 + 2 > its hard 4) is refused.
    assert not admit(store, race, gpu_job("l7", "vision", 2)).allowed


def test_a_borrower_named_for_reclaim_stays_named_when_it_grows(store: Store, policy: CompiledPolicy) -> None:
    # job-a (6) is named by vision's 3, so counted as gone: nlp counts job-b's 2. job-a then grows to 9 (+3):
    # nlp 2 + 3 = 5, 1 beyond its 4: T(nlp) −1, share −1; vision T 1, share 1; T(ai) = 0 + 1 − 1 = 0: admitted,
    # borrowing 1. Its record must stay marked, or the lender admitted on its room would never get it back.
    borrowing(store, policy)
    assert admit(store, policy, gpu_job("mine", "vision", 3)).reclaims != ()
    grown = admit(store, policy, gpu_job("job-a", "nlp", 9), "UPDATE", old=gpu_job("job-a", "nlp", 6))
    assert grown.allowed and grown.borrowed == (Draw("ai", GPU, 1 * N),)
    assert {b.name: b.reclaiming for b in store.borrowers()}["default/job-a"] is True
