"""Issue 25 #1 and #2 through a real kube-apiserver and kubectl (standalone webhook, in-memory ledger).

Figures by hand from the policy of test_webhook: team-a may use 4 cpu
(requests) and 8 GPUs.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster, wait_until
from tests.e2e.test_webhook import POLICY, deployment, probe, used

RAYCLUSTER_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rayclusters.ray.io"},
    "spec": {
        "group": "ray.io",
        "scope": "Namespaced",
        "names": {"plural": "rayclusters", "singular": "raycluster", "kind": "RayCluster",
                  "listKind": "RayClusterList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    cluster.ensure_namespace("e2e-a")
    return "e2e-a"


def _pod_spec(cpu: str, gpus: int = 0) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": cpu}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {"containers": [{"name": "app", "image": "registry.example/app:1", "resources": resources}]}


def test_a_pod_named_as_controller_does_not_make_a_deployment_free(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    """A tenant's 100m Pod as the controller of an 8-GPU Deployment: the Deployment is charged as itself."""
    hook = start_webhook(POLICY, probe=probe())
    cluster.create({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "tiny", "namespace": namespace, "labels": {"quota.group": "team-a"}},
                    "spec": _pod_spec("100m")})
    uid = cluster.kubectl("get", "pod", "tiny", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    assert used(hook.group("team-a")["limits"], "requests.cpu") == "100m"
    big = deployment("gpus", 1)
    big["spec"]["template"]["spec"] = _pod_spec("1", gpus=8)
    big["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Pod", "name": "tiny", "uid": uid,
                                           "controller": True}]
    cluster.create(big)  # 8 GPUs of 8: fits, and is charged (it was charged 0 before)
    limits = hook.group("team-a")["limits"]
    assert used(limits, "requests.nvidia.com/gpu") == "8"
    assert used(limits, "requests.cpu") == "1100m"  # 100m pod + 1 × 1 cpu
    again = deployment("more-gpus", 1)
    again["spec"]["template"]["spec"] = _pod_spec("1", gpus=1)
    denied = cluster.create(again, check=False)
    assert denied.returncode != 0
    assert "requests.nvidia.com/gpu: requested 1 (1 × pod 1), used 8 of 8, 0 free" in denied.stderr
    cluster.kubectl("delete", "deployment", "gpus", "-n", namespace)
    cluster.kubectl("delete", "pod", "tiny", "-n", namespace, "--wait=false")


def test_a_raycluster_is_charged_its_min_replicas(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    """`replicas: 0, minReplicas: 64`: KubeRay runs 64 workers; 64 × 1 GPU is over team-a's 8."""
    cluster.apply(RAYCLUSTER_CRD)
    wait_until(lambda: cluster.kubectl("get", "rayclusters", "-A", check=False).returncode == 0, "the CRD", 30)
    hook = start_webhook(POLICY, probe=probe())

    def raycluster(name: str, replicas: int, low: int, high: int) -> dict[str, Any]:
        return {
            "apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": name, "namespace": namespace, "labels": {"quota.group": "team-a"}},
            "spec": {
                "headGroupSpec": {"template": {"spec": _pod_spec("500m")}},
                "workerGroupSpecs": [{"groupName": "gpu", "replicas": replicas, "minReplicas": low,
                                      "maxReplicas": high, "template": {"spec": _pod_spec("10m", gpus=1)}}],
            },
        }

    denied = cluster.create(raycluster("wide", 0, 64, 64), check=False)
    assert denied.returncode != 0
    assert "requests.nvidia.com/gpu: requested 64 (64 × gpu 1), used 0 of 8, 8 free" in denied.stderr
    # replicas 9 clamped to maxReplicas 6: 6 GPUs, 500m + 6 × 10m cpu
    cluster.create(raycluster("clamped", 9, 2, 6))
    limits = hook.group("team-a")["limits"]
    assert used(limits, "requests.nvidia.com/gpu") == "6"
    assert used(limits, "requests.cpu") == "560m"
    cluster.kubectl("delete", "rayclusters", "--all", "-n", namespace)
