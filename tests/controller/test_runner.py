"""The controller in-process against a real apiserver: sources, first sync, policy reload, saved cash.

By hand: a `web` pod requests 1 cpu; group `a` may use 10 cpu.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller import MemoryLedger
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.runner import Controller, sources
from quotalang.loader import load_text
from tests.controller.kube_apiserver import apiserver, client
from tests.controller.test_metrics import scrape
from tests.e2e.kube_cluster import Cluster, wait_until

__all__ = ["apiserver"]
NANO = 10**9

POLICY = """\
settings {
  group label "team"
}

group a {
  requests.cpu 10
  cash requests.cpu 100h per week
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def compile_text(text: str) -> CompiledPolicy:
    return compile_sources(load_text(text, "runner.quota"))


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1",
                                                       "resources": {"requests": {"cpu": "1"}}}]}}},
    }


@pytest.fixture
def api(apiserver: Cluster) -> Iterator[KubeApi]:
    made = client(apiserver)
    namespace = f"runner-{int(time.time() * 1000) % 10**8}"
    made.request("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": namespace}})
    made.namespace = namespace  # type: ignore[attr-defined]
    yield made
    made.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/deployments")
    made.close()


def test_sources_are_every_kind_of_the_policy_and_pods() -> None:
    policy = compile_text(POLICY.replace("kind apps/v1 Deployment", "kind kubeflow.org/v1 TFJob"))
    assert sources(policy) == {"pods": "/api/v1/pods", "kubeflow.org/v1/tfjobs": "/apis/kubeflow.org/v1/tfjobs"}


def test_first_sync_then_a_new_policy_recomputes_usage_and_stop_saves_cash(api: KubeApi, tmp_path: Path) -> None:
    namespace = api.namespace  # type: ignore[attr-defined]
    api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment("web", 3))
    current = [compile_text(POLICY)]
    ledger = MemoryLedger(standalone=False)
    state = tmp_path / "cash.json"
    controller = Controller(api, lambda: current[0], ledger, state_file=state, accrue_every=3600)
    controller.start()
    try:
        assert controller.wait_synced(20)
        assert ledger.used("a")["requests.cpu"] == 3 * NANO  # 3 pods × 1 cpu, from the LIST
        scraped = scrape(controller)
        assert scraped["quotalang_controller_synced"] == 1
        assert scraped['quotalang_controller_lists_total{source="apps/v1/deployments"}'] >= 1
        assert scraped["quotalang_controller_objects"] >= 1  # web, and whatever other tests left
        # Each Deployment pod now counts twice (a second part): same objects, new rules, relisted.
        current[0] = compile_text(POLICY.replace("  }\n}\n", "  }\n  pods {\n    replicas spec.replicas\n"
                                                 "    template spec.template\n  }\n}\n"))
        wait_until(lambda: ledger.used("a").get("requests.cpu") == 6 * NANO, "usage under the new policy", 10)
        api.request("DELETE", f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
        wait_until(lambda: ledger.used("a").get("requests.cpu", 0) == 0, "the deletion to free quota", 10)
    finally:
        controller.stop()
    saved = json.loads(state.read_text())
    assert saved["version"] == 1
    # No pod ran in group a: nothing was spent, and an idle group is not rewritten each round.
    assert saved["groups"]["a"] == {"cash": {}, "periodStart": None, "lastAccrual": None}


def test_no_cash_is_accrued_before_the_first_sync(apiserver: Cluster) -> None:
    # An apiserver that never answers: the pods are unknown, so an accrual would advance the last
    # accrual time over time no pod was counted for, and that cash would be lost for good.
    from tests.e2e.kube_cluster import free_port

    api = client(apiserver)
    api.host = f"https://127.0.0.1:{free_port()}"
    ledger = MemoryLedger(standalone=False)
    controller = Controller(api, lambda: compile_text(POLICY), ledger, accrue_every=0.1)
    controller.start()
    try:
        time.sleep(2.5)  # two upkeep rounds, each past the accrual interval
        assert not controller.synced
    finally:
        controller.stop()
        api.close()
    assert ledger.cash_state("a").last_accrual is None


def test_a_new_leader_replaces_the_stored_totals_instead_of_adding_to_them(
    apiserver: Cluster, api: KubeApi
) -> None:
    from quotalang.controller.ledger.crd import from_object, object_path
    from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
    from tests.controller.kube_apiserver import wipe_ledgers

    wipe_ledgers(apiserver)
    namespace = api.namespace  # type: ignore[attr-defined]
    for name, replicas in (("one", 3), ("two", 2)):
        api.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment(name, replicas))
    policy = compile_text(POLICY)

    def stored_cpu() -> int:
        state = from_object(api.request("GET", object_path("a")), "a")
        return state.observed.get("requests.cpu", 0)

    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # every value the ledger holds while the leaders come and go
        while not stop.wait(0.01):
            seen.append(stored_cpu())

    for leader in ("first", "second"):  # the second starts from the totals the first left in the ledger
        ledger = KubernetesLedger(api, replica=leader)
        ledger.ensure_groups(policy.groups)  # as the store's upkeep does on start
        controller = Controller(api, lambda: policy, ledger, accrue_every=3600)
        if leader == "second":
            sampler = threading.Thread(target=sample)
            sampler.start()
        controller.start()
        try:
            assert controller.wait_synced(20)
            wait_until(lambda: stored_cpu() == 5 * NANO, f"the {leader} leader's totals", 10)
            time.sleep(1.5)  # past the first upkeep round after the sync
        finally:
            controller.stop()
    stop.set()
    sampler.join()
    # 3 + 2 pods × 1 cpu = 5 cpu while the second leader listed and took over; never 10, not even briefly.
    assert seen and max(seen) == 5 * NANO
