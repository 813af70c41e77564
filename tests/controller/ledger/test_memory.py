"""The memory ledger's own behaviour; what every store promises runs over it in test_ledger_contract.py.

Numbers by hand: every pod asks for 4 cpu, group `a` may use 40 cpu, so ten
pods fit. A pod charges `requests.cpu` and `cpu` (4 each) and `pods` 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.errors import InputError
from quotalang.loader import load_text
from tests.asks import admit

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


# Standalone rules (README, "Ledger"): never under-count, err toward over-counting.
def test_standalone_recreate_of_a_held_name_never_lowers_its_usage(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    assert admit(ledger, policy, deployment("web", replicas=10), "CREATE").allowed  # 40 of 40
    # `kubectl create` of the same name with nothing: the apiserver will answer AlreadyExists,
    # but the webhook is asked first. The 40 stay charged, so a second 40 cannot get in.
    assert admit(ledger, policy, deployment("web", replicas=0), "CREATE").allowed
    assert cpu(ledger, "a") == 10 * CPU
    assert not admit(ledger, policy, deployment("other", replicas=10), "CREATE").allowed


def test_standalone_recreate_with_more_holds_the_larger(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    admit(ledger, policy, deployment("web", replicas=3), "CREATE")
    assert cpu(ledger, "a") == 3 * CPU
    assert ledger.group_usage("a").objects == 1


def test_standalone_recreate_in_another_group_charges_both_until_delete(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    admit(ledger, policy, deployment("web", "a", replicas=2), "CREATE")
    admit(ledger, policy, deployment("web", "b", replicas=3), "CREATE")  # either may be the one that exists
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (2 * CPU, 3 * CPU)
    ledger.forget(key("web"))  # DELETE releases every group the name held
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 0)
    assert (ledger.group_usage("a").objects, ledger.group_usage("b").objects, len(ledger)) == (0, 0, 0)


def test_standalone_update_holds_what_the_updated_object_charges(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    admit(ledger, policy, deployment("web", "a", replicas=2), "CREATE")
    admit(ledger, policy, deployment("web", "b", replicas=3), "CREATE")
    # An UPDATE proves which object exists: the name holds what the updated object charges, and only that.
    admit(ledger, policy, deployment("web", "b", replicas=1), "UPDATE", old=deployment("web", "b", replicas=3))
    assert (cpu(ledger, "a"), cpu(ledger, "b")) == (0, 1 * CPU)


def test_standalone_update_to_no_kind_rule_keeps_the_usage_its_charges_keep(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger()
    admit(ledger, policy, deployment("web", replicas=2), "CREATE")
    served_as = {**deployment("web", replicas=0), "apiVersion": "apps/v1beta2"}  # no kind rule reads it
    decision = admit(ledger, policy, served_as, "UPDATE", old=deployment("web", replicas=2))
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
        admit(ledger, policy, poisoned, "CREATE")
    assert (cpu(ledger, "a"), len(ledger), ledger.lookup(key("web"))) == (0, 0, None)
    assert admit(ledger, policy, deployment("web", replicas=10), "CREATE").allowed  # charged in full
    assert cpu(ledger, "a") == 10 * CPU
    reconciled = MemoryLedger(standalone=False)
    with pytest.raises(InputError):
        admit(reconciled, policy, poisoned, "CREATE")
    assert (cpu(reconciled, "a"), list(reconciled.pending())) == (0, [])


# ------------------------------------------------------------ reconciled


def test_a_resync_from_a_listing_older_than_an_observation_keeps_it(policy: CompiledPolicy) -> None:
    ledger = MemoryLedger(standalone=False, clock=Clock())
    assert admit(ledger, policy, deployment("web", replicas=1), "CREATE").allowed
    listing: dict[str, dict[ObjectKey, dict[str, int]]] = {}  # taken before the watch showed web
    ledger.observe(key("web"), "a", usage(1))  # folds web's reservation
    ledger.observe(key("old"), "a", usage(2))
    ledger.forget(key("old"))  # gone after the listing: stays gone
    ledger.resync(listing)
    assert cpu(ledger, "a") == 1 * CPU  # was 0: web counted nowhere
    ledger.resync({})  # told nothing since: the listing is the truth again
    assert cpu(ledger, "a") == 0


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


def test_objects_of_lists_what_each_group_holds_with_its_usage(policy: CompiledPolicy) -> None:
    standalone = MemoryLedger()
    admit(standalone, policy, deployment("web", replicas=2), "CREATE")
    admit(standalone, policy, deployment("api", "b", replicas=3), "CREATE")
    listed = {k.name: u for k, u in standalone.objects_of("a")}
    assert list(listed) == ["web"]
    assert listed["web"]["requests.cpu"] == 2 * CPU and listed["web"]["pods"] == 2 * NANO
    reconciled = MemoryLedger(standalone=False)
    reconciled.observe(key("db"), "b", {"requests.cpu": 3 * CPU})
    assert [(k.name, u) for k, u in reconciled.objects_of("b")] == [("db", {"requests.cpu": 3 * CPU})]
    assert list(reconciled.objects_of("a")) == []
