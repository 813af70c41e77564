"""The memory ledger: folding, reservations, expiry, resync, and atomic check-and-reserve.

Numbers by hand: every pod asks for 4 cpu, group `a` may use 40 cpu, so ten
pods fit. A pod charges `requests.cpu` and `cpu` (4 each) and `pods` 1.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.errors import InputError
from quotalang.loader import load_text

NANO = 10**9
CPU = 4 * NANO  # one pod's requests.cpu, in nano-cores

POLICY = """\
settings {
  group label "team"
  unlabelled allow
}

group root {
  requests.cpu 100
  pods 100
}

group a in root {
  requests.cpu 40
  pods 40
}

group b in root {
  requests.cpu 40
  pods 40
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "ledger.quota"))


class Clock:
    """Monotonic seconds that only move when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def deployment(
    name: str, group: str | None = "a", replicas: int = 1, rv: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "labels": {} if group is None else {"team": group},
    }
    if rv is not None:
        meta["resourceVersion"] = rv
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "4"}}}]}},
        },
    }


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "ns", name)


def cpu(ledger: MemoryLedger, group: str) -> int:
    return ledger.used(group).get("requests.cpu", 0)


def usage(pods: int) -> dict[str, int]:
    return {"requests.cpu": pods * CPU, "cpu": pods * CPU, "pods": pods * NANO}


# ------------------------------------------------------------ standalone
def test_an_admitted_create_is_folded_into_observed_usage(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    assert ledger.admit(policy, deployment("web", replicas=2), "CREATE").allowed
    numbers = ledger.group_usage("a")
    assert numbers.observed["requests.cpu"] == 2 * CPU
    assert numbers.observed["pods"] == 2 * NANO
    assert (numbers.objects, numbers.reservations, dict(numbers.reserved)) == (1, 0, {})
    assert len(ledger) == 1


def test_readmitting_the_same_object_replaces_its_usage(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    for _ in range(3):  # the apiserver retried, or a client re-created after a failed write
        assert ledger.admit(policy, deployment("web", replicas=2), "CREATE").allowed
    assert cpu(ledger, "a") == 2 * CPU


def test_updates_charge_the_delta_and_shrinks_release(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
    decision = ledger.admit(
        policy, deployment("web", replicas=5), "UPDATE", old=deployment("web", replicas=2)
    )
    assert decision.allowed and decision.delta["requests.cpu"] == 3 * CPU
    assert cpu(ledger, "a") == 5 * CPU
    ledger.admit(policy, deployment("web", replicas=1), "UPDATE", old=deployment("web", replicas=5))
    assert cpu(ledger, "a") == 1 * CPU


def test_a_group_label_change_moves_the_usage(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", "a", replicas=2), "CREATE")
    assert ledger.admit(
        policy, deployment("web", "b", replicas=2), "UPDATE", old=deployment("web", "a", replicas=2)
    ).allowed
    assert cpu(ledger, "a") == 0
    assert cpu(ledger, "b") == 2 * CPU
    assert (ledger.group_usage("a").objects, ledger.group_usage("b").objects) == (0, 1)


def test_moving_to_unlabelled_releases_the_group(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", "a", replicas=2), "CREATE")
    assert ledger.admit(
        policy, deployment("web", None, replicas=2), "UPDATE", old=deployment("web", "a", replicas=2)
    ).allowed
    assert cpu(ledger, "a") == 0


def test_forget_releases_an_object(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=3), "CREATE")
    ledger.forget(key("web"))
    assert cpu(ledger, "a") == 0
    assert ledger.lookup(key("web")) is None


# Standalone rules (README, "Ledger"): never under-count, err toward over-counting.
def test_standalone_recreate_of_a_held_name_never_lowers_its_usage(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    assert ledger.admit(policy, deployment("web", replicas=10), "CREATE").allowed  # 40 of 40
    # `kubectl create` of the same name with nothing: the apiserver will answer AlreadyExists,
    # but the webhook is asked first. The 40 stay charged, so a second 40 cannot get in.
    assert ledger.admit(policy, deployment("web", replicas=0), "CREATE").allowed
    assert cpu(ledger, "a") == 10 * CPU
    assert not ledger.admit(policy, deployment("other", replicas=10), "CREATE").allowed


def test_standalone_recreate_with_more_holds_the_larger(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
    ledger.admit(policy, deployment("web", replicas=3), "CREATE")
    assert cpu(ledger, "a") == 3 * CPU
    assert ledger.group_usage("a").objects == 1


def test_standalone_recreate_in_another_group_charges_both_until_delete(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", "a", replicas=2), "CREATE")
    ledger.admit(policy, deployment("web", "b", replicas=3), "CREATE")  # either may be the one that exists
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (2 * CPU, 3 * CPU)
    ledger.forget(key("web"))  # DELETE releases every group the name held
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 0)
    assert (ledger.group_usage("a").objects, ledger.group_usage("b").objects, len(ledger)) == (0, 0, 0)


def test_standalone_update_holds_what_the_updated_object_charges(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", "a", replicas=2), "CREATE")
    ledger.admit(policy, deployment("web", "b", replicas=3), "CREATE")
    # An UPDATE proves which object exists: the name holds what the updated object charges, and only that.
    ledger.admit(policy, deployment("web", "b", replicas=1), "UPDATE", old=deployment("web", "b", replicas=3))
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 1 * CPU)


def test_standalone_update_to_no_kind_rule_keeps_the_usage_its_charges_keep(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
    served_as = {**deployment("web", replicas=0), "apiVersion": "apps/v1beta2"}  # no kind rule reads it
    decision = ledger.admit(policy, served_as, "UPDATE", old=deployment("web", replicas=2))
    assert decision.allowed and decision.reason == "no-rule" and decision.charges == {}
    assert cpu(ledger, "a") == 2 * CPU  # nothing released, as the charges say


def test_an_object_that_cannot_be_recorded_leaves_no_trace(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(300):  # past orjson's depth limit: the body cannot be packed
        node["x"] = {}
        node = node["x"]
    poisoned = deployment("web", replicas=10)
    poisoned["metadata"] = {**poisoned["metadata"], "annotations": {"deep": deep}}
    with pytest.raises(InputError):
        ledger.admit(policy, poisoned, "CREATE")
    assert (cpu(ledger, "a"), len(ledger), ledger.lookup(key("web"))) == (0, 0, None)
    assert ledger.admit(policy, deployment("web", replicas=10), "CREATE").allowed  # charged in full
    assert cpu(ledger, "a") == 10 * CPU
    reconciled = MemoryLedger(standalone=False)
    with pytest.raises(InputError):
        reconciled.admit(policy, poisoned, "CREATE")
    assert (cpu(reconciled, "a"), list(reconciled.pending())) == (0, [])


def test_dry_runs_and_denials_reserve_nothing(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    assert ledger.admit(policy, deployment("web", replicas=2), "CREATE", dry_run=True).allowed
    denied = ledger.admit(policy, deployment("big", replicas=11), "CREATE")  # 44 > 40
    assert not denied.allowed and denied.reason == "over-quota"
    assert dict(ledger.used("a")) == {}
    assert ledger.lookup(key("web")) is None


def test_scale_reads_the_indexed_parent_and_updates_it(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {"replicas": 5},
    }
    parent = ledger.lookup(key("web"))
    assert parent is not None
    assert ledger.admit(policy, scale, "UPDATE", parent=parent, identity=key("web")).allowed
    assert cpu(ledger, "a") == 5 * CPU
    indexed = ledger.lookup(key("web"))
    assert indexed is not None and indexed["spec"]["replicas"] == 5
    scale["spec"] = {"replicas": 11}  # 11 × 4 = 44 > 40
    denied = ledger.admit(policy, scale, "UPDATE", parent=indexed, identity=key("web"))
    assert not denied.allowed
    assert cpu(ledger, "a") == 5 * CPU


def test_an_hpa_is_checked_and_never_recorded(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
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
    assert ledger.admit(policy, hpa, "CREATE", parent=parent).allowed  # 10 × 4 = 40 fits
    assert cpu(ledger, "a") == 2 * CPU
    assert len(ledger) == 1
    hpa["spec"]["maxReplicas"] = 11
    assert not ledger.admit(policy, hpa, "CREATE", parent=parent).allowed


# ------------------------------------------------------------ reconciled
def test_a_reservation_counts_until_the_watch_observes_it(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
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


def test_a_reservation_expires_and_the_quota_comes_back(policy: CompiledPolicy) -> None:
    clock = Clock()
    ledger = MemoryLedger(standalone=False, clock=clock, reservation_ttl=30)
    ledger.admit(policy, deployment("web", replicas=2), "CREATE")
    clock.now = 29.9
    assert ledger.expire() == 0
    assert cpu(ledger, "a") == 2 * CPU
    clock.now = 30.0
    assert ledger.expire() == 1
    assert cpu(ledger, "a") == 0


def test_expired_reservations_are_dropped_when_the_next_request_comes(policy: CompiledPolicy) -> None:
    clock = Clock()
    ledger = MemoryLedger(standalone=False, clock=clock, reservation_ttl=30)
    assert ledger.admit(policy, deployment("never-persisted", replicas=10), "CREATE").allowed  # 40 of 40
    assert not ledger.admit(policy, deployment("next"), "CREATE").allowed
    clock.now = 31.0
    assert ledger.admit(policy, deployment("next"), "CREATE").allowed
    assert cpu(ledger, "a") == 1 * CPU


def test_only_an_observation_after_the_admitted_version_folds(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(1), resource_version="10")
    ledger.admit(policy, deployment("web", replicas=3), "UPDATE", old=deployment("web", replicas=1, rv="10"))
    assert cpu(ledger, "a") == 3 * CPU  # observed 1 + reserved 2
    ledger.observe(key("web"), "a", usage(1), resource_version="10")  # a stale event: still pending
    assert cpu(ledger, "a") == 3 * CPU
    ledger.observe(key("web"), "a", usage(3), resource_version="11")
    assert cpu(ledger, "a") == 3 * CPU
    assert dict(ledger.group_usage("a").reserved) == {}


def test_a_shrink_is_released_only_when_observed(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(5), resource_version="3")
    assert ledger.admit(
        policy, deployment("web", replicas=1), "UPDATE", old=deployment("web", replicas=5, rv="3")
    ).allowed
    assert cpu(ledger, "a") == 5 * CPU  # the update may never persist
    ledger.observe(key("web"), "a", usage(1), resource_version="4")
    assert cpu(ledger, "a") == 1 * CPU


def test_resync_replaces_observed_usage_and_keeps_reservations(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    ledger.observe(key("x"), "a", usage(2))
    ledger.admit(policy, deployment("in-flight", replicas=1), "CREATE")
    ledger.resync({"a": {key("x"): usage(3), key("z"): usage(1)}})
    numbers = ledger.group_usage("a")
    assert numbers.observed["requests.cpu"] == 4 * CPU
    assert numbers.reserved["requests.cpu"] == 1 * CPU
    assert cpu(ledger, "a") == 5 * CPU
    ledger.resync({})
    assert cpu(ledger, "a") == 1 * CPU  # the in-flight admission survives (kubernetes#123434)
    assert len(ledger) == 0


def test_a_resync_from_a_listing_older_than_an_observation_keeps_it(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    assert ledger.admit(policy, deployment("web", replicas=1), "CREATE").allowed
    listing: dict[str, dict[ObjectKey, dict[str, int]]] = {}  # taken before the watch showed web
    ledger.observe(key("web"), "a", usage(1))  # folds web's reservation
    ledger.observe(key("old"), "a", usage(2))
    ledger.forget(key("old"))  # gone after the listing: stays gone
    ledger.resync(listing)
    assert cpu(ledger, "a") == 1 * CPU  # was 0: web counted nowhere
    ledger.resync({})  # told nothing since: the listing is the truth again
    assert cpu(ledger, "a") == 0


def test_forget_drops_both_the_reservation_and_the_observation(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    ledger.observe(key("web"), "a", usage(2), resource_version="1")
    ledger.admit(policy, deployment("web", replicas=4), "UPDATE", old=deployment("web", replicas=2, rv="1"))
    assert cpu(ledger, "a") == 4 * CPU
    ledger.forget(key("web"))
    assert cpu(ledger, "a") == 0


def test_lookup_prefers_the_admitted_version_until_it_expires(policy: CompiledPolicy) -> None:
    clock = Clock()
    ledger = MemoryLedger(standalone=False, clock=clock, reservation_ttl=30)
    stored = deployment("web", replicas=2, rv="1")
    ledger.observe(key("web"), "a", usage(2), resource_version="1", body=stored)
    ledger.admit(policy, deployment("web", replicas=3), "UPDATE", old=stored)
    found = ledger.lookup(key("web"))
    assert found is not None and found["spec"]["replicas"] == 3
    clock.now = 30.0
    assert ledger.lookup(key("web")) == stored


def test_cash_is_kept_per_group(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    ledger.set_cash("a", {"requests.nvidia.com/gpu": 3600 * NANO})
    ledger.add_cash("a", "requests.nvidia.com/gpu", 1800 * NANO)
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


@pytest.mark.parametrize("standalone", [True, False], ids=["standalone", "reconciled"])
@pytest.mark.usefixtures("eager_thread_switching")
def test_fifty_concurrent_creates_that_fit_ten_admit_exactly_ten(
    policy: CompiledPolicy, standalone: bool
) -> None:
    for _ in range(3):  # a race does not show every time; without the group lock most rounds admit 11+
        ledger = MemoryLedger(standalone=standalone)
        start = threading.Barrier(50)
        allowed: list[bool] = []

        def create(
            i: int,
            ledger: MemoryLedger = ledger,
            start: threading.Barrier = start,
            allowed: list[bool] = allowed,
        ) -> None:
            start.wait()
            allowed.append(ledger.admit(policy, deployment(f"w{i}"), "CREATE").allowed)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(allowed) == 50
        assert allowed.count(True) == 10
        assert cpu(ledger, "a") == 40 * NANO


def test_one_group_busy_does_not_block_another(policy: CompiledPolicy) -> None:
    """White-box: with group a's lock held, an admission in group b still completes."""
    ledger = MemoryLedger()
    ledger.admit(policy, deployment("seed", "a"), "CREATE")
    done = threading.Event()

    def admit_in_b() -> None:
        ledger.admit(policy, deployment("other", "b"), "CREATE")
        done.set()

    with ledger._groups["a"].lock:
        thread = threading.Thread(target=admit_in_b)
        thread.start()
        assert done.wait(timeout=10)
    thread.join(timeout=10)
    assert cpu(ledger, "b") == 1 * CPU


def test_lookup_falls_back_for_what_the_index_does_not_hold(policy: CompiledPolicy) -> None:
    asked: list[ObjectKey] = []

    def fetch(identity: ObjectKey) -> dict[str, Any] | None:
        asked.append(identity)
        return deployment("live", replicas=7) if identity == key("live") else None

    ledger = MemoryLedger(standalone=False, fallback_lookup=fetch)
    ledger.observe(key("seen"), "a", usage(1), body=deployment("seen"))
    assert ledger.lookup(key("seen")) == deployment("seen")  # the index first: no call
    assert ledger.lookup(key("live"))["spec"]["replicas"] == 7  # type: ignore[index]
    assert ledger.lookup(key("gone")) is None
    assert asked == [key("live"), key("gone")]


def test_objects_of_lists_what_each_group_holds_with_its_usage(policy: CompiledPolicy) -> None:
    standalone = MemoryLedger()
    standalone.admit(policy, deployment("web", replicas=2), "CREATE")
    standalone.admit(policy, deployment("api", "b", replicas=3), "CREATE")
    listed = {k.name: u for k, u in standalone.objects_of("a")}
    assert list(listed) == ["web"]
    assert listed["web"]["requests.cpu"] == 2 * CPU and listed["web"]["pods"] == 2 * NANO
    reconciled = MemoryLedger(standalone=False)
    reconciled.observe(key("db"), "b", {"requests.cpu": 3 * CPU})
    assert [(k.name, u) for k, u in reconciled.objects_of("b")] == [("db", {"requests.cpu": 3 * CPU})]
    assert list(reconciled.objects_of("a")) == []
