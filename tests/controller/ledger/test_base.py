"""The store contract's values and the arithmetic every store shares: pure, no store."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.controller.ledger.accrual import accrue_into
from quotalang.controller.ledger.arithmetic import add_usage, summed
from quotalang.controller.ledger.base import CashError, CashState, ObjectKey
from quotalang.controller.ledger.bodies import look_up, pack
from quotalang.controller.ledger.versions import at_or_after, newer, version_of
from quotalang.errors import InternalError

NANO = 10**9


def deployment(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "ns"}}


def key(name: str) -> ObjectKey:
    return ObjectKey("apps", "Deployment", "ns", name)


# ------------------------------------------------------------ identities
def test_object_key_of_an_object_and_its_text() -> None:
    assert ObjectKey.of(deployment("web")) == key("web")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert ObjectKey.of(pod) == ObjectKey("", "Pod", "", "p")
    assert str(key("web")) == "Deployment.apps ns/web"
    assert str(ObjectKey("", "Pod", "", "p")) == "Pod p"


# ------------------------------------------------------------ arithmetic
def test_usage_adds_and_subtracts_and_zeros_leave() -> None:
    total = {"cpu": 2 * NANO, "pods": NANO}
    add_usage(total, {"cpu": NANO, "memory": 5})
    assert total == {"cpu": 3 * NANO, "pods": NANO, "memory": 5}
    add_usage(total, {"pods": NANO, "memory": 5}, -1)
    assert total == {"cpu": 3 * NANO}


def test_a_listing_sums_per_group_and_indexes_per_object() -> None:
    fresh, sums = summed({"a": {key("x"): {"cpu": 1}, key("y"): {"cpu": 2}}, "b": {}})
    # Per group, per cluster (here the one cluster ""); a group with nothing listed is absent: the stores
    # zero every group the sums do not name.
    assert sums == {"a": {"": ({"cpu": 3}, 2)}}
    assert fresh[key("y")].group == "a" and fresh[key("y")].usage == {"cpu": 2}


# ------------------------------------------------------ resource versions
def test_resource_versions_order_numerically() -> None:
    assert version_of({"metadata": {"resourceVersion": 42}}) == "42"
    assert version_of({"metadata": {}}) is None and version_of(None) is None
    assert at_or_after("10", "9") and not at_or_after("9", "10") and not at_or_after("9", "9")
    assert at_or_after(None, "9") and at_or_after("9", None)  # a CREATE has no version: any sighting counts
    assert newer("10", "9") and not newer("9", "9")
    assert newer(None, None) and newer("1", None) and not newer(None, "1")  # nothing cached: take it
    assert newer("b", "a") and not newer("a", "a")  # not etcd's integers: any other version is newer


# ---------------------------------------------------------------- lookups
class _Admitted:
    def __init__(self, body: bytes | None, deadline: float, resource_version: str | None = None) -> None:
        self.body = body
        self.deadline = deadline
        self.resource_version = resource_version


def test_lookup_prefers_the_admitted_body_until_its_deadline_then_observed_then_fallback() -> None:
    admitted = {key("web"): _Admitted(pack({"v": "admitted"}), deadline=10.0)}
    observed = {key("web"): pack({"v": "observed"})}
    assert look_up(key("web"), admitted, observed, 5.0, None) == {"v": "admitted"}
    assert look_up(key("web"), admitted, observed, 10.0, None) == {"v": "observed"}
    assert look_up(key("gone"), admitted, observed, 5.0, None) is None
    assert look_up(key("gone"), admitted, observed, 5.0, lambda k: {"v": k.name}) == {"v": "gone"}


def test_a_lookup_at_a_version_trusts_only_a_body_known_to_be_that_version() -> None:
    """A Scale's parent: the object is at resourceVersion "7" now."""
    at = {"metadata": {"resourceVersion": "7"}, "v": "observed at 7"}
    older = {"metadata": {"resourceVersion": "5"}, "v": "observed at 5"}
    admitted = {key("web"): _Admitted(pack({"v": "admitted against 5"}), deadline=10.0, resource_version="5")}
    live = {"v": "live"}
    # the watch saw it at 7: that, whatever was admitted since
    assert look_up(key("web"), admitted, {key("web"): pack(at)}, 1.0, lambda k: live, "7", fetches=True) == at
    # not seen at 7 by the watch: only a live read can say (a local lookup answers None: read in a thread)
    assert look_up(key("web"), admitted, {key("web"): pack(older)}, 1.0, lambda k: live, "7", fetches=True) == live
    assert look_up(key("web"), admitted, {key("web"): pack(older)}, 1.0, None, "7", fetches=True) is None
    # a store that cannot read live: the admitted body, unless it was admitted against 7 itself (never stored)
    assert look_up(key("web"), admitted, {key("web"): pack(older)}, 1.0, None, "7") == {"v": "admitted against 5"}
    assert look_up(key("web"), admitted, {key("web"): pack(older)}, 1.0, None, "5") == older
    # without a version, as before: the admitted body first
    assert look_up(key("web"), admitted, {key("web"): pack(at)}, 1.0, None) == {"v": "admitted against 5"}


# -------------------------------------------------------------------- cash
class _Record:
    def __init__(self) -> None:
        self.cash: dict[str, int] = {"gpu": 5}
        self.period_start: float | None = 0.0
        self.last_accrual: float | None = 100.0


def test_accrual_into_a_record_moves_only_forward() -> None:
    record = _Record()
    assert accrue_into("g", record, lambda s: None) == (CashState({"gpu": 5}, 0.0, 100.0), False)
    now, changed = accrue_into("g", record, lambda s: CashState({"gpu": s.used["gpu"] + 3, "cpu": 0}, 0.0, 110.0))
    assert changed and now == CashState({"gpu": 8, "cpu": 0}, 0.0, 110.0)
    assert record.cash == {"gpu": 8} and record.last_accrual == 110.0  # zero keys are not stored
    with pytest.raises(CashError, match="cannot move back") as caught:
        accrue_into("g", record, lambda s: CashState(s.used, 0.0, 105.0))
    assert isinstance(caught.value, InternalError) and isinstance(caught.value, ValueError)
    assert record.last_accrual == 110.0
