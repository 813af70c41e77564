"""The store contract, run against every embedded store: memory and SQLite behave the same.

The behavioural tests of the memory store (tests/controller/ledger/test_memory.py
keeps its own copy, owned with that store) apply unchanged to the SQLite
store; this module runs them over both, so that a difference between the two
is a failing test rather than a surprise after a restart. What only a durable
store can show (reopening, crashes, locking) is in test_sqlite.py.

Numbers by hand: every pod asks for 4 cpu, group `a` may use 40 cpu, so ten
pods fit. A pod charges `requests.cpu` and `cpu` (4 each) and `pods` 1.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from quotalang.borrowing import Draw, Lending, balance
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.base import LedgerUnavailable, ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.ledger.sqlite import SqliteLedger
from quotalang.decision import Decision, UsageSource
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.asks import admit
from tests.cash import add_cash, set_cash
from tests.controller.ledger.test_memory import CPU, NANO, POLICY, Clock, deployment, key, usage

Store = MemoryLedger | SqliteLedger
Make = Callable[..., Store]


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "ledger.quota"))


@pytest.fixture(params=["memory", "sqlite"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Make]:
    """Build the store under test with the memory store's keyword arguments."""
    opened: list[SqliteLedger] = []

    def build(**options: Any) -> Store:
        if request.param == "memory":
            return MemoryLedger(**options)
        store = SqliteLedger(tmp_path / f"ledger-{len(opened)}.sqlite3", **options)
        opened.append(store)
        return store

    yield build
    for store in opened:
        store.close()


def cpu(ledger: Store, group: str) -> int:
    return ledger.used(group).get("requests.cpu", 0)


# ------------------------------------------------------------ standalone
def test_an_admitted_create_is_folded_into_observed_usage(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE").allowed
    numbers = ledger.group_usage("a")
    assert numbers.observed["requests.cpu"] == 2 * CPU
    assert numbers.observed["pods"] == 2 * NANO
    assert (numbers.objects, numbers.reservations, dict(numbers.reserved)) == (1, 0, {})
    assert len(ledger) == 1


def test_readmitting_the_same_object_replaces_its_usage(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    for _ in range(3):  # the apiserver retried, or a client re-created after a failed write
        assert admit(ledger, policy, deployment("web", replicas=2), "CREATE").allowed
    assert cpu(ledger, "a") == 2 * CPU


def test_updates_charge_the_delta_and_shrinks_release(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    decision = admit(ledger,
        policy, deployment("web", replicas=5), "UPDATE", old=deployment("web", replicas=2)
    )
    assert decision.allowed and decision.delta["requests.cpu"] == 3 * CPU
    assert cpu(ledger, "a") == 5 * CPU
    admit(ledger, policy, deployment("web", replicas=1), "UPDATE", old=deployment("web", replicas=5))
    assert cpu(ledger, "a") == 1 * CPU


def test_a_create_of_a_held_name_never_lowers_usage(policy: CompiledPolicy, make: Make) -> None:
    """Standalone: a retry, or a re-create the apiserver will refuse (AlreadyExists), over-counts rather than under."""
    ledger = make()
    admit(ledger, policy, deployment("web", replicas=3), "CREATE")
    admit(ledger, policy, deployment("web", replicas=1), "CREATE")
    assert cpu(ledger, "a") == 3 * CPU  # the per-key maximum of the two
    admit(ledger, policy, deployment("web", "b", replicas=2), "CREATE")  # another group: charged as well
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (3 * CPU, 2 * CPU)
    ledger.forget(key("web"))  # a DELETE releases every group the name held
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 0)
    assert len(ledger) == 0


def test_a_group_label_change_moves_the_usage(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", "a", replicas=2), "CREATE")
    assert admit(ledger,
        policy, deployment("web", "b", replicas=2), "UPDATE", old=deployment("web", "a", replicas=2)
    ).allowed
    assert cpu(ledger, "a") == 0
    assert cpu(ledger, "b") == 2 * CPU
    assert (ledger.group_usage("a").objects, ledger.group_usage("b").objects) == (0, 1)


def test_moving_to_unlabelled_releases_the_group(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", "a", replicas=2), "CREATE")
    assert admit(ledger,
        policy, deployment("web", None, replicas=2), "UPDATE", old=deployment("web", "a", replicas=2)
    ).allowed
    assert cpu(ledger, "a") == 0


def test_forget_releases_an_object(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", replicas=3), "CREATE")
    ledger.forget(key("web"))
    assert cpu(ledger, "a") == 0
    assert ledger.lookup(key("web")) is None


def test_dry_runs_and_denials_reserve_nothing(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE", dry_run=True).allowed
    denied = admit(ledger, policy, deployment("big", replicas=11), "CREATE")  # 44 > 40
    assert not denied.allowed and denied.reason == "over-quota"
    assert dict(ledger.used("a")) == {}
    assert ledger.lookup(key("web")) is None


def test_scale_reads_the_indexed_parent_and_updates_it(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"replicas": 5},
    }
    parent = ledger.lookup(key("web"))
    assert parent is not None
    assert admit(ledger, policy, scale, "UPDATE", parent=parent, identity=key("web")).allowed
    assert cpu(ledger, "a") == 5 * CPU
    indexed = ledger.lookup(key("web"))
    assert indexed is not None and indexed["spec"]["replicas"] == 5
    scale["spec"] = {"replicas": 11}  # 11 × 4 = 44 > 40
    denied = admit(ledger, policy, scale, "UPDATE", parent=indexed, identity=key("web"))
    assert not denied.allowed
    assert cpu(ledger, "a") == 5 * CPU


def test_an_hpa_is_checked_and_never_recorded(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    hpa: dict[str, Any] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 10,
        },
    }
    parent = ledger.lookup(key("web"))
    assert admit(ledger, policy, hpa, "CREATE", parent=parent).allowed  # 10 × 4 = 40 fits
    assert cpu(ledger, "a") == 2 * CPU
    assert len(ledger) == 1
    hpa["spec"]["maxReplicas"] = 11
    assert not admit(ledger, policy, hpa, "CREATE", parent=parent).allowed


# ------------------------------------------------------------ reconciled
def test_a_reservation_counts_until_the_watch_observes_it(policy: CompiledPolicy, make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    numbers = ledger.group_usage("a")
    assert numbers.reserved["requests.cpu"] == 2 * CPU
    assert "requests.cpu" not in numbers.observed
    assert cpu(ledger, "a") == 2 * CPU
    assert list(ledger.pending()) == [key("web")]
    ledger.observe(key("web"), "a", usage(2), resource_version="5")
    numbers = ledger.group_usage("a")
    assert (dict(numbers.reserved), numbers.observed["requests.cpu"]) == ({}, 2 * CPU)
    assert cpu(ledger, "a") == 2 * CPU
    assert list(ledger.pending()) == []


def test_a_reservation_expires_and_the_quota_comes_back(policy: CompiledPolicy, make: Make) -> None:
    clock = Clock()
    ledger = make(standalone=False, clock=clock, reservation_ttl=30)
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    clock.now = 29.9
    assert ledger.expire() == 0
    assert cpu(ledger, "a") == 2 * CPU
    clock.now = 30.0
    assert ledger.expire() == 1
    assert cpu(ledger, "a") == 0


def test_expired_reservations_are_dropped_when_the_next_request_comes(policy: CompiledPolicy, make: Make) -> None:
    clock = Clock()
    ledger = make(standalone=False, clock=clock, reservation_ttl=30)
    assert admit(ledger, policy, deployment("never-persisted", replicas=10), "CREATE").allowed  # 40 of 40
    assert not admit(ledger, policy, deployment("next"), "CREATE").allowed
    clock.now = 31.0
    assert admit(ledger, policy, deployment("next"), "CREATE").allowed
    assert cpu(ledger, "a") == 1 * CPU


def test_only_an_observation_after_the_admitted_version_folds(policy: CompiledPolicy, make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(1), resource_version="10")
    admit(ledger, policy, deployment("web", replicas=3), "UPDATE", old=deployment("web", replicas=1, rv="10"))
    assert cpu(ledger, "a") == 3 * CPU  # observed 1 + reserved 2
    ledger.observe(key("web"), "a", usage(1), resource_version="10")  # a stale event: still pending
    assert cpu(ledger, "a") == 3 * CPU
    ledger.observe(key("web"), "a", usage(3), resource_version="11")
    assert cpu(ledger, "a") == 3 * CPU
    assert dict(ledger.group_usage("a").reserved) == {}


def test_a_shrink_is_released_only_when_observed(policy: CompiledPolicy, make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(5), resource_version="3")
    assert admit(ledger,
        policy, deployment("web", replicas=1), "UPDATE", old=deployment("web", replicas=5, rv="3")
    ).allowed
    assert cpu(ledger, "a") == 5 * CPU  # the update may never persist
    ledger.observe(key("web"), "a", usage(1), resource_version="4")
    assert cpu(ledger, "a") == 1 * CPU


def test_resync_replaces_observed_usage_and_keeps_reservations(policy: CompiledPolicy, make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(key("x"), "a", usage(2))
    admit(ledger, policy, deployment("in-flight", replicas=1), "CREATE")
    ledger.resync({"a": {key("x"): usage(3), key("z"): usage(1)}})
    numbers = ledger.group_usage("a")
    assert numbers.observed["requests.cpu"] == 4 * CPU
    assert numbers.reserved["requests.cpu"] == 1 * CPU
    assert cpu(ledger, "a") == 5 * CPU
    ledger.resync({})
    assert cpu(ledger, "a") == 1 * CPU  # the in-flight admission survives (kubernetes#123434)
    assert len(ledger) == 0


def test_forget_drops_both_the_reservation_and_the_observation(policy: CompiledPolicy, make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(2), resource_version="1")
    admit(ledger, policy, deployment("web", replicas=4), "UPDATE", old=deployment("web", replicas=2, rv="1"))
    assert cpu(ledger, "a") == 4 * CPU
    ledger.forget(key("web"))
    assert cpu(ledger, "a") == 0


def test_lookup_prefers_the_admitted_version_until_it_expires(policy: CompiledPolicy, make: Make) -> None:
    clock = Clock()
    ledger = make(standalone=False, clock=clock, reservation_ttl=30)
    stored = deployment("web", replicas=2, rv="1")
    ledger.observe(key("web"), "a", usage(2), resource_version="1", body=stored)
    admit(ledger, policy, deployment("web", replicas=3), "UPDATE", old=stored)
    found = ledger.lookup(key("web"))
    assert found is not None and found["spec"]["replicas"] == 3
    clock.now = 30.0
    assert ledger.lookup(key("web")) == stored


def test_cash_is_kept_per_group(policy: CompiledPolicy, make: Make) -> None:
    ledger = make()
    set_cash(ledger, "a", {"requests.nvidia.com/gpu": 3600 * NANO})
    add_cash(ledger, "a", "requests.nvidia.com/gpu", 1800 * NANO)
    assert dict(ledger.cash_used("a")) == {"requests.nvidia.com/gpu": 5400 * NANO}
    assert dict(ledger.cash_used("b")) == {}


# ------------------------------------------------------------ concurrency
@pytest.fixture
def eager_thread_switching() -> Iterator[None]:
    """Switch threads every microsecond, so a check-then-reserve race would show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def run_together(target: Callable[[int], None], count: int) -> None:
    """`target(0)` … `target(count - 1)`, each in its own thread; back when all are done."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


@pytest.mark.parametrize("standalone", [True, False], ids=["standalone", "reconciled"])
@pytest.mark.usefixtures("eager_thread_switching")
def test_fifty_concurrent_creates_that_fit_ten_admit_exactly_ten(
    policy: CompiledPolicy, make: Make, standalone: bool
) -> None:
    for _ in range(3):  # a race does not show every time; without the group lock most rounds admit 11+
        ledger = make(standalone=standalone)
        start = threading.Barrier(50)
        allowed: list[bool] = []

        def create(
            i: int,
            ledger: Store = ledger,
            start: threading.Barrier = start,
            allowed: list[bool] = allowed,
        ) -> None:
            start.wait()
            allowed.append(admit(ledger, policy, deployment(f"w{i}"), "CREATE").allowed)

        run_together(create, 50)
        assert len(allowed) == 50
        assert allowed.count(True) == 10
        assert cpu(ledger, "a") == 40 * NANO


def test_one_group_busy_does_not_block_another(policy: CompiledPolicy, make: Make) -> None:
    """White-box: with group a's lock held, an admission in group b still completes."""
    ledger = make()
    admit(ledger, policy, deployment("seed", "a"), "CREATE")
    done = threading.Event()

    def admit_in_b() -> None:
        admit(ledger, policy, deployment("other", "b"), "CREATE")
        done.set()

    with ledger._groups["a"].lock:
        thread = threading.Thread(target=admit_in_b)
        thread.start()
        assert done.wait(timeout=10)
    thread.join(timeout=10)
    assert cpu(ledger, "b") == 1 * CPU


def test_lookup_falls_back_for_what_the_index_does_not_hold(policy: CompiledPolicy, make: Make) -> None:
    asked: list[ObjectKey] = []

    def fetch(identity: ObjectKey) -> dict[str, Any] | None:
        asked.append(identity)
        return deployment("live", replicas=7) if identity == key("live") else None

    ledger = make(standalone=False, fallback_lookup=fetch)
    ledger.observe(key("seen"), "a", usage(1), body=deployment("seen"))
    assert ledger.lookup(key("seen")) == deployment("seen")  # the index first: no call
    assert ledger.lookup(key("live"))["spec"]["replicas"] == 7  # type: ignore[index]
    assert ledger.lookup(key("gone")) is None
    assert asked == [key("live"), key("gone")]


def test_a_resync_from_a_listing_older_than_an_observation_keeps_it(policy: CompiledPolicy, make: Make) -> None:
    """A listing taken before the watch showed an object never undoes its fold (kubernetes#123434's twin)."""
    ledger = make(standalone=False, clock=Clock())
    assert admit(ledger, policy, deployment("web", replicas=1), "CREATE").allowed
    listing: dict[str, dict[ObjectKey, dict[str, int]]] = {}  # taken before the watch showed web
    ledger.observe(key("web"), "a", usage(1))  # folds web's reservation
    ledger.observe(key("old"), "a", usage(2))
    ledger.forget(key("old"))  # gone after the listing: stays gone
    ledger.resync(listing)
    assert cpu(ledger, "a") == 1 * CPU  # without the merge: 0, web counted nowhere
    ledger.resync({})  # told nothing since: the listing is the truth again
    assert cpu(ledger, "a") == 0


# ------------------------------------------------------------ clusters
def in_cluster(cluster: str, name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "ns", name, cluster)


def test_a_resync_of_one_cluster_leaves_the_others_charged(make: Make) -> None:
    """Cluster east relists nothing (all gone there, or its listing is empty): west keeps its usage."""
    ledger = make(standalone=False, clock=Clock())
    ledger.resync({"a": {in_cluster("east", "web"): usage(2)}}, cluster="east")
    ledger.resync({"a": {in_cluster("west", "api"): usage(3)}}, cluster="west")
    assert cpu(ledger, "a") == 5 * CPU
    ledger.resync({}, cluster="east")
    numbers = ledger.group_usage("a")
    assert (numbers.observed["requests.cpu"], numbers.objects) == (3 * CPU, 1)
    assert numbers.observed_by_cluster == {"west": usage(3)}
    ledger.resync({"a": {in_cluster("east", "web"): usage(1)}}, cluster="east")  # east back, with one pod
    assert cpu(ledger, "a") == 4 * CPU
    ledger.resync({"a": {in_cluster("east", "x"): usage(5)}})  # a resync of "" replaces only ""'s objects
    assert cpu(ledger, "a") == 4 * CPU


def test_the_same_name_in_two_clusters_is_two_objects_charged_twice(make: Make) -> None:
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(in_cluster("east", "web"), "a", usage(2))
    ledger.observe(in_cluster("west", "web"), "a", usage(1))
    ledger.observe(key("web"), "a", usage(4))  # and in the one cluster's name space ("")
    numbers = ledger.group_usage("a")
    assert (numbers.observed["requests.cpu"], numbers.objects) == (7 * CPU, 3)
    ledger.forget(in_cluster("east", "web"))  # a deletion in east frees east's only
    assert cpu(ledger, "a") == 5 * CPU
    ledger.resync({"a": {in_cluster("west", "web"): usage(1)}}, cluster="west")
    assert ledger.group_usage("a").objects == 2


def test_usage_per_cluster_is_kept_by_observations_and_resyncs(make: Make) -> None:
    """east: web 2 pods + api 1 in a, db 2 in b; west: web 3 in a; "": old 1 in a. By hand, per cluster."""
    ledger = make(standalone=False, clock=Clock())
    ledger.observe(in_cluster("east", "web"), "a", usage(2))
    ledger.observe(in_cluster("east", "api"), "a", usage(1))
    ledger.observe(in_cluster("east", "db"), "b", usage(2))
    ledger.resync({"a": {in_cluster("west", "web"): usage(3)}}, cluster="west")
    ledger.observe(key("old"), "a", usage(1))
    a = ledger.group_usage("a")
    assert a.observed_by_cluster == {"east": usage(3), "west": usage(3), "": usage(1)}
    assert a.observed == usage(7)
    assert ledger.group_usage("b").observed_by_cluster == {"east": usage(2)}
    ledger.observe(in_cluster("east", "api"), "b", usage(1))  # api moves to group b
    ledger.resync({"a": {in_cluster("west", "web"): usage(1)}, "b": {in_cluster("west", "new"): usage(4)}},
                  cluster="west")
    a, b = ledger.group_usage("a"), ledger.group_usage("b")
    assert a.observed_by_cluster == {"east": usage(2), "west": usage(1), "": usage(1)}
    assert (a.observed, a.objects) == (usage(4), 3)
    assert b.observed_by_cluster == {"east": usage(3), "west": usage(4)}
    assert (b.observed, b.objects) == (usage(7), 3)
    ledger.forget(key("old"))
    assert "" not in ledger.group_usage("a").observed_by_cluster  # clusters with usage only


def test_a_resync_of_one_cluster_keeps_what_another_was_told_for_its_own(make: Make) -> None:
    """east's listing is taken, then east observes `late`; west resyncs first; east's older listing keeps late."""
    ledger = make(standalone=False, clock=Clock())
    listing: dict[str, dict[ObjectKey, dict[str, int]]] = {}  # east's, taken before late was seen
    ledger.observe(in_cluster("east", "late"), "a", usage(2))
    ledger.resync({"a": {in_cluster("west", "w"): usage(1)}}, cluster="west")
    ledger.resync(listing, cluster="east")
    assert cpu(ledger, "a") == 3 * CPU  # without the per-cluster merge: 1, late counted nowhere
    ledger.resync({}, cluster="east")  # told nothing since: east's listing is the truth again
    assert ledger.group_usage("a").observed_by_cluster == {"west": usage(1)}


# ------------------------------------------------------------- borrowing
# Issue 29, with the tree above: root requests.cpu 100, a 40 and b 40 carved, so root's own room is 20.
# a and b may each borrow 12 (three 4-cpu pods) beyond their 40; nobody lends. Until the language says
# `borrow`, the policy's lending is set on the compiled policy.
@pytest.fixture(scope="module")
def borrowing(policy: CompiledPolicy) -> CompiledPolicy:
    twelve = {"requests.cpu": 12 * NANO}
    return dataclasses.replace(policy, lending=Lending(borrow={"a": twelve, "b": twelve}))


def fill(ledger: Store, policy: CompiledPolicy) -> None:
    """a and b at their hard: ten pods (40 cpu) each, admitted within their guarantees."""
    for group in ("a", "b"):
        decision = admit(ledger, policy, deployment(f"full-{group}", group, replicas=10), "CREATE")
        assert decision.allowed and decision.touches == () and decision.borrowed == ()


def slow(decide: Callable[[UsageSource, bool], Decision]) -> Callable[[UsageSource, bool], Decision]:
    """The decision, then a millisecond before the store records it: a check-then-reserve window to race in."""

    def deciding(usage: UsageSource, dry_run: bool) -> Decision:
        decision = decide(usage, dry_run)
        time.sleep(0.001)
        return decision

    return deciding


@pytest.mark.parametrize("standalone", [True, False], ids=["standalone", "reconciled"])
@pytest.mark.usefixtures("eager_thread_switching")
def test_two_siblings_racing_for_their_parents_room_admit_exactly_what_fits(
    borrowing: CompiledPolicy, make: Make, standalone: bool
) -> None:
    # a and b full; 20 one-pod creates (10 from each) race for root's own 20 cpu: exactly 5 fit
    # (5 × 4 = 20), each sibling at most 3 (its borrow 12). Each decision waits a millisecond before it is
    # recorded: without the ancestor's lock every round admits 6 (each sibling's 3, both reading root's 20).
    for _ in range(3):
        ledger = make(standalone=standalone)
        fill(ledger, borrowing)
        start = threading.Barrier(20)
        allowed: list[tuple[str, bool]] = []

        def create(
            i: int,
            ledger: Store = ledger,
            start: threading.Barrier = start,
            allowed: list[tuple[str, bool]] = allowed,
        ) -> None:
            group = "ab"[i % 2]
            ask = ask_for(borrowing, deployment(f"w{i}", group), "CREATE")
            start.wait()
            allowed.append((group, ledger.reserve(dataclasses.replace(ask, decide=slow(ask.decide))).allowed))

        run_together(create, 20)
        assert len(allowed) == 20
        won = [group for group, ok in allowed if ok]
        assert len(won) == 5
        assert won.count("a") <= 3 and won.count("b") <= 3
        assert cpu(ledger, "a") + cpu(ledger, "b") == 100 * NANO  # 40 + 40 + root's 20


def test_a_borrowing_admission_says_what_it_borrowed_from_where(borrowing: CompiledPolicy, make: Make) -> None:
    # a full: one more pod is 4 beyond its 40, within its borrow 12: drawn from root's own room (20).
    ledger = make()
    fill(ledger, borrowing)
    decision = admit(ledger, borrowing, deployment("extra", "a"), "CREATE")
    assert decision.allowed and decision.touches == ("root",)
    assert decision.borrowed == (Draw("root", "requests.cpu", 4 * NANO),)
    assert "borrowed 4 of requests.cpu from root" in decision.explanation()
    assert decision.as_json()["borrowed"] == [{"from": "root", "resource": "requests.cpu", "amount": "4"}]
    assert cpu(ledger, "a") == 44 * NANO  # recorded in its own group only; root's balance is derived
    # Three more than its borrow (12 = 3 pods): the fourth extra pod is 16 beyond, 4 short.
    for i in range(2):
        assert admit(ledger, borrowing, deployment(f"extra-{i}", "a"), "CREATE").allowed
    denied = admit(ledger, borrowing, deployment("too-many", "a"), "CREATE")
    assert not denied.allowed and denied.touches == () and cpu(ledger, "a") == 52 * NANO
    assert "4 short beyond the 12 it may borrow" in denied.message


def test_within_its_guarantee_a_request_takes_its_groups_lock_alone(borrowing: CompiledPolicy, make: Make) -> None:
    """White-box: with root's lock held, a request of a within its 40 completes; one that borrows waits for it."""
    ledger = make()
    admit(ledger, borrowing, deployment("seed", "a", replicas=10), "CREATE")
    done = threading.Event()
    borrowed = threading.Event()

    def within() -> None:
        admit(ledger, borrowing, deployment("seed", "a", replicas=9), "UPDATE",
              old=deployment("seed", "a", replicas=10))
        done.set()

    def beyond() -> None:
        admit(ledger, borrowing, deployment("more", "a", replicas=2), "CREATE")  # 36 + 8 = 44: borrows 4
        borrowed.set()

    with ledger._group("root").lock:
        first = threading.Thread(target=within)
        first.start()
        assert done.wait(timeout=10)
        second = threading.Thread(target=beyond)
        second.start()
        assert not borrowed.wait(timeout=0.3)
    assert borrowed.wait(timeout=10)
    first.join(timeout=10)
    second.join(timeout=10)
    assert cpu(ledger, "a") == 44 * NANO


def test_a_borrowing_request_gives_up_at_its_deadline_and_records_nothing(
    borrowing: CompiledPolicy, make: Make
) -> None:
    ledger = make()
    fill(ledger, borrowing)
    with ledger._group("root").lock, pytest.raises(LedgerUnavailable):
        admit(ledger, borrowing, deployment("late", "a"), "CREATE", deadline=time.monotonic() + 0.2)
    assert cpu(ledger, "a") == 40 * NANO and ledger.lookup(key("late"), local=True) is None


@pytest.mark.usefixtures("eager_thread_switching")
def test_a_lender_taking_back_and_a_sibling_borrowing_race_for_the_same_lent_room(make: Make) -> None:
    # root 80 = a 40 + b 40: no room of its own. a lends 8 (two pods), b may borrow 8. a holds 32 (its
    # guarantee, 40 − 8), b its 40. Ten one-pod creates (5 from each) race for a's lent 8: exactly 2 fit,
    # whoever wins them (a taking back, b borrowing); a's guarantee and root's 80 hold.
    tree = POLICY.replace("requests.cpu 100", "requests.cpu 80")
    eight = {"requests.cpu": 8 * NANO}
    lending = dataclasses.replace(compile_sources(load_text(tree, "ledger.quota")),
                                  lending=Lending(lend={"a": eight}, borrow={"b": eight}))
    for _ in range(3):
        ledger = make()
        assert admit(ledger, lending, deployment("held-a", "a", replicas=8), "CREATE").touches == ()
        assert admit(ledger, lending, deployment("held-b", "b", replicas=10), "CREATE").touches == ()
        start = threading.Barrier(10)
        won: list[str] = []

        def create(i: int, ledger: Store = ledger, start: threading.Barrier = start, won: list[str] = won) -> None:
            group = "ab"[i % 2]
            ask = ask_for(lending, deployment(f"r{i}", group), "CREATE")
            start.wait()
            if ledger.reserve(dataclasses.replace(ask, decide=slow(ask.decide))).allowed:
                won.append(group)

        run_together(create, 10)
        assert len(won) == 2
        assert cpu(ledger, "a") + cpu(ledger, "b") == 80 * NANO


TREE = """\
settings {
  group label "team"
}

group root {
  requests.cpu 80
}

group ai in root {
  requests.cpu 48 borrow 16
}

group vision in ai {
  requests.cpu 16 lend 8
}

group nlp in ai {
  requests.cpu 16 borrow 12
}

group data in root {
  requests.cpu 24 lend 12
}

group etl in data {
  requests.cpu 16 lend 4 borrow 8
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


@pytest.mark.usefixtures("eager_thread_switching")
def test_concurrent_requests_across_a_lending_tree_never_break_a_balance(make: Make) -> None:
    # test_borrowing's tree × 4 cpu (one pod each), written in the language. 48 one-pod creates in every
    # group at once, each decision waiting 1 ms before it is recorded. Afterwards every balance is at or
    # above its floor (−borrow; a root 0), so every subtree holds at most hard + borrow: root 80 in all.
    # Sequentially, whatever the order, 20 pods fit in all (root's 80 / 4).
    tree = compile_sources(load_text(TREE, "tree.quota"))
    groups = list(tree.groups)
    ledger = make()
    start = threading.Barrier(48)

    def create(i: int) -> None:
        ask = ask_for(tree, deployment(f"t{i}", groups[i % len(groups)]), "CREATE")
        start.wait()
        ledger.reserve(dataclasses.replace(ask, decide=slow(ask.decide)))

    run_together(create, 48)
    used = {g: cpu(ledger, g) for g in groups}
    for name, group in tree.groups.items():
        floor = 0 if group.parent is None else -tree.lending.terms(name, "requests.cpu")[1]
        assert balance(tree.groups, tree.lending, lambda g: {"requests.cpu": used[g]}, name, "requests.cpu") >= floor
    assert sum(used.values()) == 80 * NANO
