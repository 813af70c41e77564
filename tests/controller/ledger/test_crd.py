"""The ledger object's format and names: pure, no apiserver."""

from __future__ import annotations

import pytest

from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.crd import (
    Held,
    LedgerFormatError,
    LedgerState,
    from_object,
    identity_key,
    object_name,
    parse_identity,
    to_object,
)
from quotalang.controller.ledger.crd_schema import crd


def test_group_names_map_to_object_names() -> None:
    assert object_name("ai-lab") == "ai-lab"
    assert object_name("team.a") == "team.a"
    mapped = object_name("ml_ops")
    assert mapped.startswith("ml-ops-") and len(mapped) == 17  # `_` is not allowed: sanitised + 10 hex
    assert object_name("a..b") != object_name("a.b")  # an invalid subdomain is hashed, so no collision
    assert len(object_name("x" * 300)) <= 253


def test_a_state_round_trips_with_exact_nanos() -> None:
    big = 8 * 1024**4 * 10**9  # 8Ti of memory in nanos: past 2^53, exact only as a string
    state = LedgerState(
        "ai-lab", "42", {"limits.memory": big, "requests.cpu": 1500 * 10**6}, 3,
        {"r1": Held({"requests.cpu": 10**9}, 4, 1_700_000_000.25)}, ["apps/Deployment/ns/web@41"],
        {"requests.nvidia.com/gpu": 36 * 10**12}, 1_699_920_000.0, 1_699_999_999.5, 7, "r1/7/3",
    )
    obj = to_object(state)
    assert obj["status"]["observed"]["limits.memory"] == str(big)
    assert obj["status"]["reservations"]["r1"]["expires"] == "2023-11-14T22:13:20.250000Z"
    assert obj["metadata"] == {"name": "ai-lab", "resourceVersion": "42"}
    assert from_object(obj, "ai-lab") == state


def test_draws_and_the_terms_they_were_counted_under_round_trip() -> None:
    state = LedgerState("p", "9", drawn={"a": {"requests.cpu": 3 * 10**9}}, drawn_at={"a": "8"},
                        drawn_terms="0123456789abcdef")
    obj = to_object(state)
    assert obj["status"]["drawnTerms"] == "0123456789abcdef"
    assert from_object(obj, "p") == state
    assert "drawnTerms" not in to_object(LedgerState("c"))["status"]  # absent: from before digests, or no pool
    assert from_object(to_object(LedgerState("c")), "c").drawn_terms is None


def test_usage_per_cluster_round_trips_and_an_object_without_it_is_the_one_clusters() -> None:
    state = LedgerState("ml", observed={"requests.cpu": 5}, objects=3,
                        observed_by_cluster={"east": {"requests.cpu": 2}, "west": {"requests.cpu": 3}},
                        objects_by_cluster={"east": 1, "west": 2})
    obj = to_object(state)
    assert obj["status"]["observedByCluster"] == {"east": {"requests.cpu": "2"}, "west": {"requests.cpu": "3"}}
    assert from_object(obj) == state
    del obj["status"]["observedByCluster"], obj["status"]["objectsByCluster"]  # as a version without clusters
    old = from_object(obj)
    assert (old.observed_by_cluster, old.objects_by_cluster) == ({"": {"requests.cpu": 5}}, {"": 3})
    assert old.set_cluster("east", {"requests.cpu": 4}, 2)  # a resync of east: "" stays, the totals follow
    assert (old.observed, old.objects) == ({"requests.cpu": 9}, 5)
    old.add_observed({"requests.cpu": 5}, -1, "")  # the fold of ""'s only object going
    assert (old.observed_by_cluster, old.objects_by_cluster) == ({"east": {"requests.cpu": 4}}, {"": 2, "east": 2})
    obj["status"]["objectsByCluster"] = {"east": "many"}
    obj["status"]["observedByCluster"] = {}
    with pytest.raises(LedgerFormatError, match=r"objectsByCluster\.east is 'many'"):
        from_object(obj)


def test_an_older_per_object_reservation_reads_as_a_replica_of_one() -> None:
    obj = to_object(LedgerState("one"))
    obj["status"]["reservations"] = {"apps/Deployment/ns/web": {
        "usage": {"requests.cpu": "1000000000"}, "deadline": "2023-11-14T22:13:20.250000Z", "replica": "r1"}}
    held = from_object(obj, "one").reservations["apps/Deployment/ns/web"]
    assert held == Held({"requests.cpu": 10**9}, 1, 1_700_000_000.25)  # counted until it expires, then dropped


def test_a_foreign_or_broken_object_is_refused() -> None:
    obj = to_object(LedgerState("one"))
    with pytest.raises(LedgerFormatError, match="belongs to group 'one', not 'two'"):
        from_object(obj, "two")
    obj["status"]["observed"] = {"requests.cpu": "1.5"}
    with pytest.raises(LedgerFormatError, match="not an integer of nanos"):
        from_object(obj)


def test_asks_and_answers_round_trip_and_anything_but_a_count_is_refused() -> None:
    state = LedgerState("one", "7", reservations={"r1": Held({"requests.cpu": 10**9}, 1, 1_700_000_000.5, 3)}, asks=3)
    obj = to_object(state)
    assert (obj["status"]["asks"], obj["status"]["reservations"]["r1"]["answered"]) == (3, 3)
    assert from_object(obj, "one") == state
    for where, value in (("asks", -1), ("asks", "3"), ("asks", True), ("answered", 1.5), ("answered", -2)):
        broken = to_object(state)
        target = broken["status"] if where == "asks" else broken["status"]["reservations"]["r1"]
        target[where] = value
        with pytest.raises(LedgerFormatError, match=f"{where} is .*not a count"):
            from_object(broken, "one")


def test_identities_round_trip() -> None:
    for identity in (ObjectKey("apps", "Deployment", "ns", "web"), ObjectKey("", "Pod", "ns", "p")):
        assert parse_identity(identity_key(identity)) == identity
    assert identity_key(ObjectKey("", "Pod", "ns", "p")) == "/Pod/ns/p"


def test_identities_carry_their_cluster_and_old_entries_read_as_the_one_cluster() -> None:
    in_a = ObjectKey("apps", "Deployment", "ns", "web", "a")
    assert identity_key(in_a) == "a:apps/Deployment/ns/web"
    assert identity_key(ObjectKey("", "Pod", "ns", "p", "eu-1")) == "eu-1:/Pod/ns/p"
    for identity in (in_a, ObjectKey("", "Pod", "ns", "p", "eu-1"), ObjectKey("", "Namespace", "", "n", "b")):
        assert parse_identity(identity_key(identity)) == identity
    assert parse_identity("apps/Deployment/ns/web") == ObjectKey("apps", "Deployment", "ns", "web", "")
    assert parse_identity("apps/Deployment/ns/web") != in_a
    with pytest.raises(LedgerFormatError, match="cluster:"):
        parse_identity("a:apps/Deployment/web")


def test_the_crd_is_structural_and_cluster_scoped() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == "quotaledgers.quotalang.dev"
    assert doc["spec"]["scope"] == "Cluster"
    version = doc["spec"]["versions"][0]
    assert "subresources" not in version  # one PUT replaces spec and status together
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["properties"]["observed"]["additionalProperties"] == {"type": "string", "pattern": "^-?[0-9]+$"}
