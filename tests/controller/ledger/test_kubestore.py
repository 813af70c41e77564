"""KubernetesLedger against a real kube-apiserver: CAS admission, the controller's writes, cash, fencing.

Numbers by hand: group `ml` may use 5 cpu (requests.cpu 5 = 5_000_000_000
nanos); every `web-N` Deployment here runs one pod requesting 1 cpu, so five
fit and the sixth does not, whichever replica decides it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube import deadline
from quotalang.controller.kube.api import ApiError, KubeApi
from quotalang.controller.ledger.base import CashState, LedgerUnavailable, NotLeader, ObjectKey, Observation
from quotalang.controller.ledger.crd import from_object, object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.tuning import Tuning
from quotalang.loader import load_text
from tests.asks import admit
from tests.cash import add_cash
from tests.controller.kube_apiserver import Cluster, apiserver, client, wipe_ledgers

__all__ = ["apiserver"]  # the session fixture, imported for pytest

CPU = 10**9  # one cpu in nanos
POLICY = """\
settings {
  group label "team"
  unlabelled deny
}

group root {
  requests.cpu   100
}

group ml in root {
  requests.cpu     5
}

group lab_x in root {
  requests.cpu    10
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
    return compile_sources(load_text(POLICY, "test.quota"))


@pytest.fixture
def cluster(apiserver: Cluster) -> Cluster:
    wipe_ledgers(apiserver)
    return apiserver


@pytest.fixture
def apis(cluster: Cluster) -> Iterator[list[KubeApi]]:
    made = [client(cluster) for _ in range(3)]
    yield made
    for api in made:
        api.close()


def deployment(
    name: str, cpu: str = "1", replicas: int = 1, group: str = "ml", rv: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"team": group}}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu}}}]}}},
    }


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "default", name)


def stored(api: KubeApi, group: str) -> dict[str, Any]:
    return api.request("GET", object_path(group))


def reserved_cpu(api: KubeApi, group: str) -> int:
    """What the replicas' entries hold for their admissions; their leases (`NAME~lease`, headroom taken ahead
    in a burst: test_kubestore_leases.py) are not admissions."""
    state = from_object(stored(api, group), group)
    return sum(r.usage.get("requests.cpu", 0) for name, r in state.reservations.items() if not name.endswith("~lease"))


def test_an_admission_reserves_exact_nanos_in_its_groups_object(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    decision = admit(ledger, policy, deployment("web-1", cpu="1500m", replicas=2), "CREATE")
    assert decision.allowed
    raw = stored(apis[0], "ml")
    assert raw["spec"] == {"group": "ml"}
    entry = raw["status"]["reservations"]["r0"]  # the replica's sum, not one entry per object
    assert entry["usage"]["requests.cpu"] == "3000000000"  # 2 × 1500m
    assert entry["count"] == 1
    mine = ledger.reservations("ml")  # per object, in the admitting replica's memory only
    assert list(mine) == ["apps/Deployment/default/web-1"]
    assert mine["apps/Deployment/default/web-1"]["requests.cpu"] == 3 * CPU
    assert ledger.used("ml")["requests.cpu"] == 3 * CPU
    # Only the checked group's object was touched: lab_x has none yet.
    assert ledger.cached("lab_x") is None


def test_a_dry_run_and_a_denial_write_nothing(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    assert admit(ledger, policy, deployment("big", replicas=4), "CREATE").allowed
    before = stored(apis[0], "ml")["metadata"]["resourceVersion"]
    assert admit(ledger, policy, deployment("dry"), "CREATE", dry_run=True).allowed
    denied = admit(ledger, policy, deployment("two", replicas=2), "CREATE")
    assert not denied.allowed
    assert "requests.cpu: requested 2" in denied.message and "used 4 of 5" in denied.message
    assert stored(apis[0], "ml")["metadata"]["resourceVersion"] == before


def test_concurrent_admissions_over_three_replicas_admit_exactly_what_fits(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    replicas = [KubernetesLedger(api, replica=f"r{i}") for i, api in enumerate(apis)]
    for ledger in replicas:  # every replica starts from the same (empty) cached version: all race
        ledger.read("ml", time.monotonic() + 10)
    start = threading.Barrier(18)

    def one(i: int) -> bool:
        start.wait()
        until = time.monotonic() + deadline.budget(10)
        return admit(replicas[i % 3], policy, deployment(f"web-{i}"), "CREATE", deadline=until).allowed

    with ThreadPoolExecutor(18) as pool:
        results = list(pool.map(one, range(18)))
    assert results.count(True) == 5
    assert reserved_cpu(apis[0], "ml") == 5 * CPU
    assert sum(r.stats.conflicts for r in replicas) >= 2  # they really raced (3 replicas from one version)


def test_a_stale_cache_costs_a_conflict_not_an_over_admission(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    b.read("ml", time.monotonic() + 10)  # b caches the empty ledger
    assert admit(a, policy, deployment("first", replicas=4), "CREATE").allowed
    decision = admit(b, policy, deployment("second", replicas=2), "CREATE")  # fits b's stale cache only
    assert not decision.allowed
    assert b.stats.conflicts == 1  # its write lost; re-read; denied against a's reservation
    assert admit(b, policy, deployment("third"), "CREATE").allowed
    assert reserved_cpu(apis[0], "ml") == 5 * CPU


def test_a_stale_cache_never_denies_what_fits(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    assert admit(a, policy, deployment("first", replicas=4), "CREATE").allowed
    b.read("ml", time.monotonic() + 10)  # b caches 4 cpu reserved
    a.forget(key("first"))  # the leader saw it deleted: 4 cpu free again
    a.tidy()  # a, its admitter, saw the confirmation and writes its smaller sum (the runtime does, every 0.1 s)
    assert b.used("ml")["requests.cpu"] == 4 * CPU  # b's cache has not heard (no watch here)
    assert admit(b, policy, deployment("second", replicas=2), "CREATE").allowed  # denied by the cache, re-read
    assert admit(b, policy, deployment("second", replicas=2), "CREATE", dry_run=True).allowed
    assert reserved_cpu(apis[0], "ml") == 2 * CPU


def test_a_repeated_create_replaces_its_reservation(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    for _ in range(3):  # the user retries after a later webhook rejected it: charged once
        assert admit(ledger, policy, deployment("web", replicas=3), "CREATE").allowed
    assert reserved_cpu(apis[0], "ml") == 3 * CPU
    # It is checked without its own superseded reservation: 5 fit even though 3 are reserved.
    assert admit(ledger, policy, deployment("web", replicas=5), "CREATE").allowed
    assert reserved_cpu(apis[0], "ml") == 5 * CPU


def test_updates_add_up_across_versions_and_replace_on_the_same_version(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    v1 = deployment("web", replicas=1, rv="100")
    assert admit(ledger, policy, deployment("web", replicas=2), "UPDATE", old=v1).allowed  # +1
    assert admit(ledger, policy, deployment("web", replicas=2), "UPDATE", old=v1).allowed  # same version: +1 again
    assert reserved_cpu(apis[0], "ml") == 1 * CPU
    v2 = deployment("web", replicas=2, rv="101")
    assert admit(ledger, policy, deployment("web", replicas=4), "UPDATE", old=v2).allowed  # newer: +2 on top
    assert ledger.reservations("ml")["apps/Deployment/default/web"]["requests.cpu"] == 3 * CPU
    ledger.observe(key("web"), "ml", {"requests.cpu": 2 * CPU}, resource_version="101")  # the version admitted against
    assert ledger.reservations("ml")  # not after it: still unconfirmed
    ledger.observe(key("web"), "ml", {"requests.cpu": 4 * CPU}, resource_version="102")
    assert ledger.reservations("ml") == {}


def test_observe_folds_the_reservation_in_the_same_write(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    admitting, leader = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="leader")
    assert admit(admitting, policy, deployment("web", replicas=2), "CREATE").allowed
    leader.read("ml", time.monotonic() + 10)
    leader.observe(key("web"), "ml", {"requests.cpu": 2 * CPU}, resource_version="500")
    assert leader.stats.writes == 1  # usage in, and the identity listed for its admitter: one write
    state = from_object(stored(apis[1], "ml"), "ml")
    assert state.observed == {"requests.cpu": 2 * CPU} and state.objects == 1
    assert state.folded == ["apps/Deployment/default/web@500"]
    assert state.reservations["a"].count == 1  # counted twice for a moment, never not at all
    admitting.read("ml", time.monotonic() + 10)  # sees the fold (the watch does this in a replica)
    assert admitting.tidy() == 1
    assert from_object(stored(apis[1], "ml"), "ml").reservations == {}
    # Scaled to 3 and seen again: the diff only; then deleted: released.
    leader.observe(key("web"), "ml", {"requests.cpu": 3 * CPU}, resource_version="501")
    assert from_object(stored(apis[1], "ml"), "ml").observed == {"requests.cpu": 3 * CPU}
    leader.forget(key("web"))
    state = from_object(stored(apis[1], "ml"), "ml")
    assert state.observed == {} and state.objects == 0


def test_observing_a_listing_writes_once_per_group_with_the_same_result(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    admitting, leader = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="leader")
    assert admit(admitting, policy, deployment("b", replicas=2), "CREATE").allowed  # 2 cpu reserved in ml
    for group in ("ml", "lab_x"):
        leader.read(group, time.monotonic() + 10)
    before = leader.stats.writes
    leader.observe_many([
        Observation(key("a"), "ml", {"requests.cpu": 1 * CPU}, "700"),
        Observation(key("b"), "ml", {"requests.cpu": 2 * CPU}, "701"),  # folds b's reservation
        Observation(key("c"), "lab_x", {"requests.cpu": 3 * CPU}, "702"),
        Observation(key("d"), "lab_x", {"requests.cpu": 4 * CPU}, "703"),
    ])
    assert leader.stats.writes - before == 2  # one per group, not one per object
    ml, lab = from_object(stored(apis[1], "ml"), "ml"), from_object(stored(apis[1], "lab_x"), "lab_x")
    # ml: 1 + 2 = 3 cpu over 2 objects, b's reservation gone; lab_x: 3 + 4 = 7 cpu over 2 objects.
    assert (ml.observed, ml.objects) == ({"requests.cpu": 3 * CPU}, 2)
    admitting.remember(ml)
    assert admitting.reservations("ml") == {}  # b's admission was confirmed by the fold
    assert (lab.observed, lab.objects) == ({"requests.cpu": 7 * CPU}, 2)
    # c moves to ml in a later batch: released from lab_x, added to ml.
    leader.observe_many([Observation(key("c"), "ml", {"requests.cpu": 3 * CPU}, "710")])
    ml, lab = from_object(stored(apis[1], "ml"), "ml"), from_object(stored(apis[1], "lab_x"), "lab_x")
    assert (ml.observed, ml.objects) == ({"requests.cpu": 6 * CPU}, 3)
    assert (lab.observed, lab.objects) == ({"requests.cpu": 4 * CPU}, 1)


def test_an_update_reservation_stays_until_a_newer_version_is_seen(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    ledger.observe(key("web"), "ml", {"requests.cpu": 1 * CPU}, resource_version="100")
    assert admit(ledger, policy, deployment("web", replicas=3), "UPDATE", old=deployment("web", rv="100")).allowed
    ledger.observe(key("web"), "ml", {"requests.cpu": 1 * CPU}, resource_version="100")  # a re-list of the old one
    assert ledger.used("ml")["requests.cpu"] == 3 * CPU  # 1 observed + 2 reserved: still held
    ledger.observe(key("web"), "ml", {"requests.cpu": 3 * CPU}, resource_version="104")
    ledger.tidy()
    state = from_object(stored(apis[0], "ml"), "ml")
    assert state.observed == {"requests.cpu": 3 * CPU} and state.reservations == {}


def test_expire_and_resync(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    now = [1_000_000.0]
    ledger = KubernetesLedger(apis[0], replica="r0", clock=lambda: now[0])
    assert admit(ledger, policy, deployment("gone"), "CREATE").allowed
    now[0] += 10
    assert admit(ledger, policy, deployment("pending", replicas=2), "CREATE").allowed
    # A resync from a LIST that holds neither keeps both reservations (kubernetes#123434).
    ledger.resync({"ml": {key("other"): {"requests.cpu": 1 * CPU}}})
    assert ledger.used("ml")["requests.cpu"] == 4 * CPU
    now[0] += 25  # `gone` is 35 s old, `pending` 25 s
    assert ledger.expire() == 0  # the replica's entry lives until its last deadline
    assert ledger.tidy() == 1  # its admitter lets `gone` go
    assert list(ledger.reservations("ml")) == ["apps/Deployment/default/pending"]
    state = from_object(stored(apis[0], "ml"), "ml")
    assert state.reservations["r0"].count == 1
    assert state.observed == {"requests.cpu": 1 * CPU} and state.objects == 1
    assert ledger.used("ml")["requests.cpu"] == 3 * CPU
    # A replica that died leaves its entry: the leader drops it at the entry's last deadline.
    dead = KubernetesLedger(apis[1], replica="dead", clock=lambda: now[0])
    assert admit(dead, policy, deployment("orphan"), "CREATE").allowed
    now[0] += 31
    assert ledger.expire() == 2  # r0's (its `pending` is past too) and the dead replica's
    assert from_object(stored(apis[0], "ml"), "ml").reservations == {}


def counted_cpu(api: KubeApi, group: str) -> int:
    """What the group's ledger object charges: observed plus every replica's reservations."""
    return from_object(stored(api, group), group).observed.get("requests.cpu", 0) + reserved_cpu(api, group)


def test_a_resync_from_a_listing_older_than_a_fold_never_undoes_it(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    # The leader admits web, the watch shows it, the fold confirms it and the admitter lets its
    # reservation go; only then does a resync land with a listing taken before web was seen.
    ledger = KubernetesLedger(apis[0], replica="r0", fold_interval=0.1)  # flushed by hand, as the fold thread
    assert admit(ledger, policy, deployment("web"), "CREATE").allowed
    listing: dict[str, dict[ObjectKey, dict[str, int]]] = {}  # recompute's snapshot: no web yet
    ledger.observe(key("web"), "ml", {"requests.cpu": 1 * CPU}, resource_version="900")
    assert ledger.flush() == 1
    assert reserved_cpu(apis[0], "ml") == 0  # confirmed in the fold write itself: only observed holds it now
    assert ledger.tidy() == 0
    ledger.resync(listing)
    assert counted_cpu(apis[0], "ml") == 1 * CPU  # was 0: web counted nowhere until the next resync
    # The same with the fold still queued when the resync comes: written before the replacement.
    ledger.observe(key("api"), "ml", {"requests.cpu": 2 * CPU}, resource_version="901")
    ledger.resync({"ml": {key("web"): {"requests.cpu": 1 * CPU}}})
    assert counted_cpu(apis[0], "ml") == 3 * CPU
    # Told nothing since: the next listing is the truth again.
    ledger.resync({"ml": {key("web"): {"requests.cpu": 1 * CPU}}})
    assert counted_cpu(apis[0], "ml") == 1 * CPU


def test_a_new_terms_listing_outranks_what_an_earlier_term_was_told(apis: list[KubeApi]) -> None:
    epoch = [10]
    ledger = KubernetesLedger(apis[0], replica="r0", fence=lambda: epoch[0])
    ledger.observe(key("web"), "ml", {"requests.cpu": 2 * CPU}, resource_version="900")
    epoch[0] = 20  # the lease was lost and won back: this term's reconciler listed web at 1 cpu
    ledger.resync({"ml": {key("web"): {"requests.cpu": 1 * CPU}}})
    assert counted_cpu(apis[0], "ml") == 1 * CPU


def test_a_failed_fold_write_keeps_its_observations_and_the_other_groups_are_written(
    apis: list[KubeApi], monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0", fold_interval=0.1)
    for group in ("ml", "lab_x"):
        ledger.read(group, time.monotonic() + 10)
    real = apis[0].request
    failures = {"ml": 1}  # ml's next write is refused once
    lost = {"lab_x": 1}  # lab_x's next write lands, but its answer is lost

    def request(method: str, path: str, **kwargs: Any) -> Any:
        group = next((g for g in ("ml", "lab_x") if path == object_path(g)), "")
        if method == "PUT" and failures.get(group):
            failures[group] -= 1
            raise ApiError(422, "Invalid", "refused once")
        answer = real(method, path, **kwargs)
        if method == "PUT" and lost.get(group):
            lost[group] -= 1
            raise ApiError(422, "Invalid", "the answer went missing")
        return answer

    monkeypatch.setattr(apis[0], "request", request)
    ledger.observe(key("a"), "ml", {"requests.cpu": 1 * CPU}, resource_version="900")
    ledger.observe(key("b"), "lab_x", {"requests.cpu": 2 * CPU}, resource_version="901")
    with pytest.raises(LedgerUnavailable, match="refused once"):
        ledger.flush()
    ledger.observe(key("c"), "ml", {"requests.cpu": 3 * CPU}, resource_version="902")
    assert ledger.flush() == 3  # ml: a again (its token), then c; lab_x: its write is found, not made twice
    for group, cpu, objects in (("ml", 4, 2), ("lab_x", 2, 1)):
        state = from_object(stored(apis[0], group), group)
        assert (state.observed, state.objects) == ({"requests.cpu": cpu * CPU}, objects), group


def test_the_ledger_object_stays_small_while_500_admissions_are_pending(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    tuning = Tuning(lease_window=3.0)  # the leases end within the test
    replicas = [KubernetesLedger(api, replica=f"webhook-{i}", tuning=tuning) for i, api in enumerate(apis)]
    sizes = []
    for i in range(500):  # nothing folds them: no leader runs
        assert admit(replicas[i % 3], policy, deployment(f"web-{i:03}", cpu="100m", group="root"), "CREATE").allowed
        if i % 100 == 99:
            sizes.append(len(orjson.dumps(stored(apis[0], "root"))))
    raw = stored(apis[0], "root")
    assert sum(len(r.reservations("root")) for r in replicas) == 500
    assert set(raw["status"]["reservations"]) <= {f"webhook-{i}{lease}" for i in range(3) for lease in ("", "~lease")}
    time.sleep(tuning.lease_window)  # then each replica returns its lease, writing what it handed out into its sum
    for replica in replicas:
        replica.tidy()
    raw = stored(apis[0], "root")
    assert {k: v["count"] for k, v in raw["status"]["reservations"].items()} == {
        "webhook-0": 167, "webhook-1": 167, "webhook-2": 166}
    assert max(sizes) < 3000, sizes  # keys × replicas, whatever is in flight (was ~170 bytes per admission)
    assert len(raw["metadata"].get("managedFields") or []) <= 1  # one writer, status written whole


def test_a_fold_write_lists_only_what_another_replica_may_hold(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    """Alone, the leader confirms its own admissions in its fold write and lists none of them: `folded` stays
    empty and the object small. Once another replica has an entry, it may hold the same identity: listed."""
    leader = KubernetesLedger(apis[0], replica="leader")
    assert admit(leader, policy, deployment("web"), "CREATE").allowed
    leader.observe(key("web"), "ml", {"requests.cpu": CPU}, resource_version="700")
    state = from_object(stored(apis[0], "ml"), "ml")
    assert (state.folded, state.reservations, state.observed) == ([], {}, {"requests.cpu": CPU})
    assert leader.reservations("ml") == {}  # confirmed here, not through the list
    other = KubernetesLedger(apis[1], replica="other")
    assert admit(other, policy, deployment("api"), "CREATE").allowed
    assert admit(leader, policy, deployment("db"), "CREATE").allowed
    leader.observe(key("db"), "ml", {"requests.cpu": CPU}, resource_version="701")
    state = from_object(stored(apis[0], "ml"), "ml")
    assert state.folded == ["apps/Deployment/default/db@701"]
    assert leader.reservations("ml") == {} and set(state.reservations) == {"other"}
    assert state.observed == {"requests.cpu": 2 * CPU}


def test_the_leader_folds_many_events_with_one_write_per_group(apis: list[KubeApi]) -> None:
    leader = KubernetesLedger(apis[0], replica="leader", fold_interval=0.1)  # the runtime's fold thread flushes
    leader.read("ml", time.monotonic() + 10)
    before = leader.stats.writes
    for i in range(20):
        leader.observe(key(f"w{i}"), "ml", {"requests.cpu": CPU // 10}, resource_version=str(900 + i))
    assert leader.stats.writes == before  # queued, not one write per event
    assert leader.flush() == 1
    state = from_object(stored(apis[0], "ml"), "ml")
    assert (state.observed, state.objects, len(state.folded)) == ({"requests.cpu": 2 * CPU}, 20, 20)


def test_the_fold_thread_lets_growth_wait_and_writes_what_frees_quota_at_once(
    apis: list[KubeApi]
) -> None:
    """The fold thread's flush is patient: observations that only add usage wait up to `fold_patience` to share
    their group's write; a deletion or a shrink makes its group due at the next flush, with what waited."""
    leader = KubernetesLedger(apis[0], replica="leader", fold_interval=0.1, tuning=Tuning(fold_patience=0.5))
    for group in ("ml", "lab_x"):
        leader.read(group, time.monotonic() + 10)
    leader.observe(key("a"), "ml", {"requests.cpu": 1 * CPU}, resource_version="900")
    leader.observe(key("b"), "lab_x", {"requests.cpu": 3 * CPU}, resource_version="901")
    assert leader.flush(patient=True) == 0  # both only add: they wait
    leader.forget(key("a"))  # frees ml's cpu
    assert leader.flush(patient=True) == 1  # ml alone: a's fold and its release in one write
    ml, lab_x = (from_object(stored(apis[0], g), g) for g in ("ml", "lab_x"))
    assert (ml.observed, ml.objects, lab_x.observed) == ({}, 0, {})
    time.sleep(0.5)
    assert leader.flush(patient=True) == 1  # lab_x's growth, once its patience ran out
    assert from_object(stored(apis[0], "lab_x"), "lab_x").observed == {"requests.cpu": 3 * CPU}
    leader.observe(key("b"), "lab_x", {"requests.cpu": 1 * CPU}, resource_version="902")  # a shrink
    assert leader.flush(patient=True) == 1
    assert from_object(stored(apis[0], "lab_x"), "lab_x").observed == {"requests.cpu": 1 * CPU}


def test_a_fenced_old_leader_cannot_write_after_a_newer_one(apis: list[KubeApi]) -> None:
    epochs = {"old": 10, "new": 20}
    old = KubernetesLedger(apis[0], replica="old", fence=lambda: epochs["old"])
    new = KubernetesLedger(apis[1], replica="new", fence=lambda: epochs["new"])
    add_cash(old, "ml", "requests.nvidia.com/gpu", 5)
    new.resync({})  # the new leader's first round stamps its epoch on every object it knows
    assert from_object(stored(apis[1], "ml"), "ml").leader_epoch == 20
    with pytest.raises(NotLeader, match="epoch 20"):
        add_cash(old, "ml", "requests.nvidia.com/gpu", 5)
    follower = KubernetesLedger(apis[2], replica="f", fence=lambda: None)
    with pytest.raises(NotLeader, match="not the leader"):
        add_cash(follower, "ml", "requests.nvidia.com/gpu", 1)
    assert from_object(stored(apis[1], "ml"), "ml").cash == {"requests.nvidia.com/gpu": 5}


def test_cash_is_accrued_once_when_two_leaders_race(apis: list[KubeApi]) -> None:
    rate = 2 * 10**9  # two GPUs held: 2e9 nano-GPU per second
    a, b = KubernetesLedger(apis[0], replica="a"), KubernetesLedger(apis[1], replica="b")
    a.update_cash("ml", lambda s: CashState({}, 0.0, 1000.0))
    b.read("ml", time.monotonic() + 10)  # b holds the version with lastAccrual 1000

    def accrue_to(until: float) -> Any:
        def accrue(state: CashState) -> CashState | None:
            last = state.last_accrual or until
            if until <= last:
                return None
            spent = dict(state.used)
            spent["requests.nvidia.com/gpu"] = spent.get("requests.nvidia.com/gpu", 0) + int((until - last) * rate)
            return CashState(spent, state.period_start, until)
        return accrue

    a.update_cash("ml", accrue_to(1010.0))
    b.update_cash("ml", accrue_to(1010.0))  # stale: 409, re-read, nothing left to accrue
    b.update_cash("ml", accrue_to(1012.0))  # two more seconds, once
    state = from_object(stored(apis[0], "ml"), "ml")
    assert state.cash == {"requests.nvidia.com/gpu": 12 * rate}
    assert state.last_accrual == 1012.0
    assert b.stats.conflicts == 1
    with pytest.raises(ValueError, match="cannot move back"):
        a.update_cash("ml", lambda s: CashState(s.used, s.period_start, 1005.0))


def test_past_the_deadline_an_unreachable_apiserver_is_a_clear_error(policy: CompiledPolicy) -> None:
    from kubernetes import client as k8s

    configuration = k8s.Configuration()
    configuration.host = "https://127.0.0.1:9"  # discard port: nothing listens
    ledger = KubernetesLedger(KubeApi(configuration), replica="r0")
    started = time.monotonic()
    with pytest.raises(LedgerUnavailable, match="gave up at the request deadline"):
        admit(ledger, policy, deployment("web"), "CREATE", deadline=started + deadline.budget(1.0))
    assert time.monotonic() - started < 1.0  # budget(1 s) = 0.5 s, plus the last try
    assert ledger.stats.unavailable == 1


def test_a_follower_finds_a_scale_parent_by_a_live_get(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    from quotalang.server.reload import PolicyHolder
    from quotalang.server.stores import live_lookup

    body = deployment("scaled", replicas=2)
    body["spec"]["selector"] = {"matchLabels": {"app": "scaled"}}
    body["spec"]["template"]["metadata"] = {"labels": {"app": "scaled"}}
    path = "/apis/apps/v1/namespaces/default/deployments"
    apis[0].request("POST", path, body=body)
    try:
        ledger = KubernetesLedger(apis[0], replica="f", fallback_lookup=live_lookup(apis[0], PolicyHolder(policy)))
        parent = ledger.lookup(key("scaled"))  # neither admitted nor observed here
        assert parent is not None and parent["spec"]["replicas"] == 2
        rv = parent["metadata"]["resourceVersion"]
        scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
                 "metadata": {"name": "scaled", "namespace": "default", "resourceVersion": rv},
                 "spec": {"replicas": 4}}
        old = {**scale, "spec": {"replicas": 2}}
        decision = admit(ledger, policy, scale, "UPDATE", old=old, parent=parent, identity=key("scaled"))
        assert decision.allowed
        assert reserved_cpu(apis[0], "ml") == 2 * CPU  # 2 → 4 replicas of 1 cpu
        assert ledger.lookup(key("missing")) is None
    finally:
        apis[0].request("DELETE", f"{path}/scaled")


# ------------------------------------------------------------ clusters
def in_cluster(cluster: str, name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "default", name, cluster)


def shares(api: KubeApi, group: str) -> tuple[dict[str, int], dict[str, int], int]:
    """The stored cpu per cluster, objects per cluster, and the total cpu (which must be their sum)."""
    state = from_object(stored(api, group), group)
    by_cluster = {c: u.get("requests.cpu", 0) for c, u in state.observed_by_cluster.items()}
    assert sum(by_cluster.values()) == state.observed.get("requests.cpu", 0)
    assert sum(state.objects_by_cluster.values()) == state.objects
    return by_cluster, state.objects_by_cluster, state.observed.get("requests.cpu", 0)


def test_a_resync_of_one_cluster_replaces_only_its_share(apis: list[KubeApi]) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    ledger.resync({"ml": {in_cluster("east", "web"): {"requests.cpu": 2 * CPU}}}, cluster="east")
    ledger.resync({"ml": {in_cluster("west", "api"): {"requests.cpu": 3 * CPU}}}, cluster="west")
    assert shares(apis[0], "ml") == ({"east": 2 * CPU, "west": 3 * CPU}, {"east": 1, "west": 1}, 5 * CPU)
    ledger.resync({}, cluster="east")  # east lists nothing: west stays charged
    assert shares(apis[0], "ml") == ({"west": 3 * CPU}, {"west": 1}, 3 * CPU)
    assert ledger.group_usage("ml").observed_by_cluster == {"west": {"requests.cpu": 3 * CPU}}


def test_a_new_leader_keeps_the_share_of_a_cluster_it_has_not_listed_yet(apis: list[KubeApi]) -> None:
    """Its index is empty: west's share comes from the ledger object until west's own relist replaces it."""
    old = KubernetesLedger(apis[0], replica="old", fence=lambda: 10)
    old.resync({"ml": {in_cluster("east", "web"): {"requests.cpu": 2 * CPU}}}, cluster="east")
    old.resync({"ml": {in_cluster("west", "api"): {"requests.cpu": 3 * CPU},
                       in_cluster("west", "db"): {"requests.cpu": 1 * CPU}}}, cluster="west")
    new = KubernetesLedger(apis[1], replica="new", fence=lambda: 20)
    new.resync({"ml": {in_cluster("east", "web"): {"requests.cpu": 1 * CPU}}}, cluster="east")
    assert shares(apis[1], "ml") == ({"east": 1 * CPU, "west": 4 * CPU}, {"east": 1, "west": 2}, 5 * CPU)
    new.resync({"ml": {in_cluster("west", "api"): {"requests.cpu": 3 * CPU}}}, cluster="west")  # west is back
    assert shares(apis[1], "ml") == ({"east": 1 * CPU, "west": 3 * CPU}, {"east": 1, "west": 1}, 4 * CPU)


def test_the_same_name_in_two_clusters_is_charged_twice_and_folded_by_cluster(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    ledger, leader = KubernetesLedger(apis[0], replica="r0"), KubernetesLedger(apis[1], replica="leader")
    east, west = in_cluster("east", "web"), in_cluster("west", "web")
    assert admit(ledger, policy, deployment("web"), "CREATE", identity=east).allowed
    assert admit(ledger, policy, deployment("web", replicas=2), "CREATE", identity=west).allowed
    assert reserved_cpu(apis[0], "ml") == 3 * CPU  # two objects, not one replaced by the other
    leader.observe(east, "ml", {"requests.cpu": 1 * CPU}, resource_version="900")
    state = from_object(stored(apis[0], "ml"), "ml")
    assert state.folded == ["east:apps/Deployment/default/web@900"]  # listed for r0, which admitted it
    ledger.read("ml", time.monotonic() + 10)  # r0 sees the fold (its watch does this in a replica)
    assert list(ledger.reservations("ml")) == ["west:apps/Deployment/default/web"]  # east's confirmed only
    leader.observe(west, "ml", {"requests.cpu": 2 * CPU}, resource_version="901")
    assert shares(apis[0], "ml") == ({"east": 1 * CPU, "west": 2 * CPU}, {"east": 1, "west": 1}, 3 * CPU)
    leader.forget(east)  # a deletion in east frees east's only
    assert shares(apis[0], "ml") == ({"west": 2 * CPU}, {"west": 1}, 2 * CPU)


def test_a_ledger_object_without_clusters_reads_as_the_one_clusters(apis: list[KubeApi]) -> None:
    """Written by a version without clusters: all of it is cluster ""'s, which a resync of east keeps."""
    ledger = KubernetesLedger(apis[0], replica="r0")
    ledger.resync({"ml": {key("web"): {"requests.cpu": 2 * CPU}}})
    raw = stored(apis[0], "ml")
    del raw["status"]["observedByCluster"], raw["status"]["objectsByCluster"]
    apis[0].request("PUT", object_path("ml"), body=raw)
    assert shares(apis[0], "ml") == ({"": 2 * CPU}, {"": 1}, 2 * CPU)
    fresh = KubernetesLedger(apis[1], replica="r1")
    fresh.resync({"ml": {in_cluster("east", "api"): {"requests.cpu": 1 * CPU}}}, cluster="east")
    assert shares(apis[1], "ml") == ({"": 2 * CPU, "east": 1 * CPU}, {"": 1, "east": 1}, 3 * CPU)


def test_borrowing_beyond_a_guarantee_is_refused_by_a_store_without_the_policy(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    """Issue 29: ml (5 cpu) may borrow 2 from root's own 85; a store given no policy (a tool; the runtime
    always gives it one) has no terms to register the draw under, so a request past ml's 5 is denied, saying
    why, and reserves nothing; one within the 5 is admitted as before. With the policy:
    test_kubestore_borrowing.py."""
    lending = compile_sources(load_text(POLICY.replace("requests.cpu     5", "requests.cpu     5 borrow 2"),
                                        "test.quota"))
    assert lending.lending  # the language's `borrow`, compiled
    ledger = KubernetesLedger(apis[0], replica="r0")
    assert admit(ledger, lending, deployment("within", cpu="4"), "CREATE").allowed  # 4 ≤ 5
    denied = admit(ledger, lending, deployment("beyond", cpu="2"), "CREATE")  # 4 + 2 = 6 > 5
    assert not denied.allowed and "borrowing is not supported by the kubernetes ledger store" in denied.message
    assert denied.touches == () and denied.charges == {}
    assert ledger.used("ml")["requests.cpu"] == 4 * CPU
