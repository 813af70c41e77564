"""The fake apiserver keeps the apiserver's rules the store relies on, and the store runs on it with no apiserver.

Numbers by hand: group `ml` may use 5 cpu; `web` runs one pod of 1 cpu and
2 Gi per replica (1 cpu = 10**9 nanos, 1 Gi = 2**30 * 10**9 nanos).
"""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube.api import ApiError, Unreachable
from quotalang.controller.ledger.base import LedgerUnavailable
from quotalang.controller.ledger.crd import COLLECTION_PATH, from_object, object_path
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.loader import load_text
from quotalang.server.engine import ask_for
from tests.controller.ledger.fake_api import FakeApiServer, FakeKubeApi

CPU, GI = 10**9, 2**30 * 10**9
POLICY = """\
settings {
  group label "team"
}

group root {
  requests.cpu    10
  requests.memory 10Gi
}

group ml in root {
  requests.cpu    5
  requests.memory 10Gi
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Faults:
    def __init__(self, *faults: str | None) -> None:
        self.faults = list(faults)

    def fault(self, method: str, path: str) -> str | None:
        return self.faults.pop(0) if self.faults else None

    def answered(self, method: str, path: str) -> None:
        return None


def ledger_object(name: str, rv: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "quotalang.dev/v1alpha1", "kind": "QuotaLedger", "metadata": meta,
            "spec": {"group": name}, "status": {}}


def test_a_compare_and_swap_on_an_old_version_is_a_conflict_and_changes_nothing() -> None:
    api = FakeKubeApi(FakeApiServer(), Clock())
    created = api.request("POST", COLLECTION_PATH, body=ledger_object("ml"))
    assert created["metadata"]["resourceVersion"] == "2"  # the counter starts at 1
    api.request("PUT", object_path("ml"), body=ledger_object("ml", "2"))
    with pytest.raises(ApiError) as conflict:
        api.request("PUT", object_path("ml"), body=ledger_object("ml", "2"))
    assert conflict.value.status == 409
    assert api.request("GET", object_path("ml"))["metadata"]["resourceVersion"] == "3"
    with pytest.raises(ApiError) as exists:
        api.request("POST", COLLECTION_PATH, body=ledger_object("ml"))
    assert exists.value.status == 409
    with pytest.raises(ApiError) as missing:
        api.request("GET", object_path("other"))
    assert missing.value.status == 404


def test_a_lost_answer_was_applied_and_a_timeout_was_not() -> None:
    clock = Clock()
    api = FakeKubeApi(FakeApiServer(), clock, network=Faults("lost"), latency=0.0)
    with pytest.raises(Unreachable):
        api.request("POST", COLLECTION_PATH, body=ledger_object("ml"))
    assert api.request("GET", object_path("ml"))["metadata"]["resourceVersion"] == "2"  # it landed
    api.network = Faults("timeout")
    with pytest.raises(Unreachable):
        api.request("PUT", object_path("ml"), body=ledger_object("ml", "2"), timeout=4.0)
    assert clock.now == 104.0  # the caller waited its whole timeout
    assert api.request("GET", object_path("ml"))["metadata"]["resourceVersion"] == "2"  # not applied


def test_an_injected_conflict_is_another_writer_landing_first() -> None:
    api = FakeKubeApi(FakeApiServer(), Clock())
    api.request("POST", COLLECTION_PATH, body=ledger_object("ml"))
    api.network = Faults("conflict")
    with pytest.raises(ApiError) as conflict:
        api.request("PUT", object_path("ml"), body=ledger_object("ml", "2"))
    assert conflict.value.status == 409
    assert api.request("GET", object_path("ml"))["metadata"]["resourceVersion"] == "3"


def test_a_watch_resumes_from_its_version_and_a_compacted_history_is_410() -> None:
    server = FakeApiServer()
    api = FakeKubeApi(server, Clock())
    api.request("POST", COLLECTION_PATH, body=ledger_object("a"))  # 2
    api.request("POST", COLLECTION_PATH, body=ledger_object("b"))  # 3
    api.watch_limit = 1
    query = {"resourceVersion": "2", "allowWatchBookmarks": "true"}
    events = list(api.watch(COLLECTION_PATH, query, timeout=5))
    assert [(e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events] == [
        ("ADDED", "3"), ("BOOKMARK", "3")]
    api.watch_limit = 0
    events = list(api.watch(COLLECTION_PATH, {"resourceVersion": "1", "allowWatchBookmarks": "true"}, timeout=5))
    assert events == [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "1"}}}]  # never past one
    server.compact()
    events = list(api.watch(COLLECTION_PATH, {"resourceVersion": "2"}, timeout=5))
    assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]


def deployment(replicas: int, cpu: str, rv: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "labels": {"team": "ml"}}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
        "replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": "app", "resources": {"requests": {"cpu": cpu, "memory": "2Gi"}}}]}}}}


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "test.quota"))


def test_a_second_update_against_the_same_version_keeps_what_the_create_before_it_holds(
    policy: CompiledPolicy,
) -> None:
    """CREATE (1 cpu, 2 Gi, stored at v7, not folded yet); an UPDATE against v7 to 2 cpu is admitted but never
    stored (a later webhook refused it); the retried UPDATE against v7 to 1.5 cpu. Only one of the two updates
    can be stored, but the CREATE is: the replica must still hold its 2 Gi and 1 cpu, plus the larger of the two
    deltas (1 cpu). It used to hold only the last delta: 0.5 cpu and no memory, while 1.5 cpu and 2 Gi ran."""
    clock = Clock()
    api = FakeKubeApi(FakeApiServer(), clock)
    ledger = KubernetesLedger(api, replica="r0", monotonic=clock.monotonic, sleep=clock.sleep)  # type: ignore[arg-type]
    def allowed(obj: dict[str, Any], operation: str, old: dict[str, Any] | None = None) -> bool:
        return ledger.reserve(ask_for(policy, obj, operation, old=old, deadline=clock.now + 9.5)).allowed

    assert allowed(deployment(1, "1"), "CREATE")
    v7 = deployment(1, "1", rv="7")
    assert allowed(deployment(1, "2"), "UPDATE", v7)
    assert allowed(deployment(1, "1500m"), "UPDATE", v7)
    held = from_object(api.request("GET", object_path("ml")), "ml").reservations["r0"]
    assert (held.usage["requests.cpu"], held.usage["requests.memory"], held.count) == (2 * CPU, 2 * GI, 1)
    # A newer version adds on top, as before: against v8 (1.5 cpu), 4 replicas would need 4.5 cpu more (2 + 4.5 >
    # 5: denied), 2 replicas 1.5 more.
    v8 = deployment(1, "1500m", rv="8")
    assert not allowed(deployment(4, "1500m"), "UPDATE", v8)
    assert allowed(deployment(2, "1500m"), "UPDATE", v8)
    held = from_object(api.request("GET", object_path("ml")), "ml").reservations["r0"]
    assert held.usage["requests.cpu"] == 2 * CPU + 1500 * 10**6


def test_the_store_waits_on_the_clock_it_is_given(policy: CompiledPolicy) -> None:
    """Unreachable for good: the admission retries with backoff on the injected clock and gives up at its
    deadline (9.5 s of the default 10 s), without a second of real time."""
    clock = Clock()

    class Down:
        def fault(self, method: str, path: str) -> str | None:
            return "reset"

        def answered(self, method: str, path: str) -> None:
            return None

    api = FakeKubeApi(FakeApiServer(), clock, network=Down(), latency=0.0)
    ledger = KubernetesLedger(api, replica="r0", monotonic=clock.monotonic, sleep=clock.sleep)  # type: ignore[arg-type]
    with pytest.raises(LedgerUnavailable, match="gave up at the request deadline"):
        ledger.reserve(ask_for(policy, deployment(1, "1"), "CREATE", deadline=clock.now + 9.5))
    assert 109.4 <= clock.now <= 109.6
