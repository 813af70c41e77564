"""StoreRuntime against a real kube-apiserver: ledger objects follow the policy, the watch feeds the cache.

The policy, objects and numbers are `test_kubestore`'s: group `ml` may use
5 cpu and every `web-N` Deployment runs pods of 1 cpu.
"""

from __future__ import annotations

import time

from quotalang.compiler import CompiledPolicy
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.kubernetes.ledger import KubernetesLedger
from quotalang.controller.ledger.kubernetes.runtime import StoreRuntime
from tests.asks import admit
from tests.controller.kube_apiserver import apiserver
from tests.controller.ledger.test_kubestore import CPU, apis, cluster, deployment, key, policy

__all__ = ["apis", "apiserver", "cluster", "policy"]  # fixtures, imported for pytest


def test_groups_get_ledgers_and_removed_ones_are_kept_until_empty(
    apis: list[KubeApi], policy: CompiledPolicy
) -> None:
    ledger = KubernetesLedger(apis[0], replica="r0")
    ledger.observe(key("legacy-app"), "retired", {"requests.cpu": 1 * CPU})  # a group no longer in the policy
    runtime = StoreRuntime(ledger, lambda: policy)
    runtime.maintain()
    names = {item["spec"]["group"]: item["metadata"]["name"]
             for item in apis[0].request("GET", "/apis/quotalang.dev/v1alpha1/quotaledgers")["items"]}
    assert names["root"] == "root" and names["ml"] == "ml"
    assert names["lab_x"].startswith("lab-x-") and len(names["lab_x"]) == len("lab-x-") + 10  # `_` is not DNS
    assert runtime.orphans == ["retired"] and "retired" in names
    ledger.forget(key("legacy-app"))
    runtime.maintain()
    assert runtime.orphans == ["retired"]  # reported on the round it was seen empty, deleted on that round
    listed = apis[0].request("GET", "/apis/quotalang.dev/v1alpha1/quotaledgers")["items"]
    assert "retired" not in {item["spec"]["group"] for item in listed}


def test_the_watch_keeps_another_replicas_cache_current(apis: list[KubeApi], policy: CompiledPolicy) -> None:
    writer, reader = KubernetesLedger(apis[0], replica="w"), KubernetesLedger(apis[1], replica="r")
    runtime = StoreRuntime(reader, lambda: policy, interval=3600)
    runtime.start()
    try:
        assert admit(writer, policy, deployment("web", replicas=2), "CREATE").allowed
        deadline_at = time.monotonic() + 5
        while reader.used("ml").get("requests.cpu") != 2 * CPU:
            assert time.monotonic() < deadline_at, "the watch never delivered the write"
            time.sleep(0.05)
    finally:
        runtime.stop()
