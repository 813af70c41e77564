"""A real kube-apiserver calls `quotalang serve` over TLS (standalone, in-memory ledger).

Every number is computed by hand from the policy below: team-a may use 4 cpu
(requests), 8 GPUs of which 4 A100s. A `web` Deployment pod requests 1 cpu.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster, wait_until

POLICY = """\
import "quotalang:policies"

settings {
  group label  "quota.group"
  model label  gpu "quota.group/gpu-type"
}

group root {
  requests.cpu                  20
  requests.nvidia.com/gpu       16
  requests.nvidia.com/gpu.A100   8
}

group team-a in root {
  requests.cpu                   4
  requests.nvidia.com/gpu        8
  requests.nvidia.com/gpu.A100   4
}
"""

TFJOB_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "tfjobs.kubeflow.org"},
    "spec": {
        "group": "kubeflow.org",
        "scope": "Namespaced",
        "names": {"plural": "tfjobs", "singular": "tfjob", "kind": "TFJob", "listKind": "TFJobList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


def deployment(name: str, replicas: int, namespace: str = "e2e-a", group: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"quota.group": group}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                         "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
            },
        },
    }


def tfjob(name: str, workers: int, gpus: int, model: str = "A100") -> dict[str, Any]:
    def replica(count: int, gpu: int) -> dict[str, Any]:
        resources = {"requests": {"cpu": "100m"}, "limits": {"nvidia.com/gpu": str(gpu)}} if gpu else \
            {"requests": {"cpu": "100m"}}
        return {"replicas": count, "template": {"spec": {"containers": [
            {"name": "tensorflow", "image": "tf:2", "resources": resources}]}}}

    return {
        "apiVersion": "kubeflow.org/v1", "kind": "TFJob",
        "metadata": {"name": name, "namespace": "e2e-a",
                     "labels": {"quota.group": "team-a", "quota.group/gpu-type": model}},
        "spec": {"tfReplicaSpecs": {"Chief": replica(1, 0), "Worker": replica(workers, gpus)}},
    }


def used(limits: list[dict[str, str]], key: str) -> str:
    return next(item["used"] for item in limits if item["key"] == key)


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    cluster.ensure_namespace("e2e-a")
    return "e2e-a"


def probe() -> dict[str, Any]:
    return deployment("probe", 1, group="no-such-group")


def test_deployment_admitted_charged_and_the_next_denied_as_kubectl_shows_it(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    hook = start_webhook(POLICY, probe=probe())
    cluster.create(deployment("web", 3))
    assert used(hook.group("team-a")["limits"], "requests.cpu") == "3"  # 3 pods × 1 cpu

    denied = cluster.create(deployment("batch", 2), check=False)
    assert denied.returncode != 0
    # 3 used of 4: a 2-pod Deployment (2 × 1 cpu) does not fit.
    assert denied.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook "quota.quotalang.dev" '
        "denied the request: quota exceeded in group root/team-a: "
        "requests.cpu: requested 2 (2 × pod 1), used 3 of 4, 1 free"
    )
    assert cluster.kubectl("get", "deployment", "batch", "-n", namespace, check=False).returncode != 0
    assert used(hook.group("team-a")["limits"], "requests.cpu") == "3"
    cluster.kubectl("delete", "deployment", "web", "-n", namespace)


def test_kubectl_scale_beyond_quota_is_denied(cluster: Cluster, start_webhook: StartWebhook, namespace: str) -> None:
    hook = start_webhook(POLICY, probe=probe())
    cluster.create(deployment("api", 2))
    cluster.kubectl("scale", "deployment", "api", "-n", namespace, "--replicas=4")  # 4 × 1 = 4 of 4: fits
    assert used(hook.group("team-a")["limits"], "requests.cpu") == "4"
    denied = cluster.kubectl("scale", "deployment", "api", "-n", namespace, "--replicas=5", check=False)
    assert denied.returncode != 0
    assert "denied the request: quota exceeded in group root/team-a: requests.cpu" in denied.stderr
    assert "used 4 of 4, 0 free" in denied.stderr
    replicas = cluster.kubectl("get", "deployment", "api", "-n", namespace, "-o", "jsonpath={.spec.replicas}")
    assert replicas.stdout == "4"
    cluster.kubectl("delete", "deployment", "api", "-n", namespace)


def test_a_custom_resource_is_charged_through_its_kind_rule_with_the_prefix_rule(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    cluster.apply(TFJOB_CRD)
    wait_until(lambda: cluster.kubectl("get", "tfjobs", "-A", check=False).returncode == 0, "the TFJob CRD", 30)
    hook = start_webhook(POLICY, probe=probe())

    cluster.create(tfjob("small", workers=1, gpus=2))  # 1 × 2 A100
    limits = hook.group("team-a")["limits"]
    assert used(limits, "requests.nvidia.com/gpu") == "2"
    assert used(limits, "requests.nvidia.com/gpu.A100") == "2"
    assert used(limits, "requests.cpu") == "200m"  # Chief 100m + 1 worker × 100m

    # 2 workers × 2 A100 = 4: the generic key has room (2 + 4 ≤ 8), the A100 key does not (2 + 4 > 4).
    denied = cluster.create(tfjob("big", workers=2, gpus=2), check=False)
    assert "requests.nvidia.com/gpu.A100: requested 4 (2 × Worker 2), used 2 of 4, 2 free" in denied.stderr

    # The same job on T4s charges only the generic key: 2 + 4 = 6 ≤ 8.
    cluster.create(tfjob("big-t4", workers=2, gpus=2, model="T4"))
    assert used(hook.group("team-a")["limits"], "requests.nvidia.com/gpu") == "6"
    cluster.kubectl("delete", "tfjobs", "--all", "-n", namespace)
