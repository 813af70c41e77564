"""Issue 26 on a real apiserver: charges bound to what the cluster enforces.

Users act through client certificates the apiserver's CA signed, so RBAC is
the cluster's own: alice may create Deployments only in vision-dev, bob only
in llm-dev. The policy binds vision-dev to vision and llm-dev to llm, and
llm limits A100s, which the scheduler tells apart by the node label
`nvidia.com/gpu.product`. Every number is computed by hand from the policy.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster

POLICY = """\
import "quotalang:policies"

settings {
  group label "acme.io/team"
  model label gpu "acme.io/gpu-model"
  model gpu A100 "NVIDIA-A100-SXM4-80GB" "NVIDIA-A100-PCIE-40GB"
  model gpu T4 "Tesla-T4"
  node label gpu "nvidia.com/gpu.product"
}

group ai {
  requests.cpu                   20
  requests.nvidia.com/gpu        16
  requests.nvidia.com/gpu.A100    8
}

group llm in ai {
  namespaces "llm-dev"
  requests.cpu                    8
  requests.nvidia.com/gpu         8
  requests.nvidia.com/gpu.A100    4
}

group vision in ai {
  namespaces "vision-dev"
  requests.cpu                    8
  requests.nvidia.com/gpu         8
  requests.nvidia.com/gpu.A100    4
}
"""

DENIED = 'admission webhook "quota.quotalang.dev" denied the request: '


def deployment(name: str, namespace: str, *, gpus: int = 0, selector: dict[str, str] | None = None,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {"requests": {"cpu": "1"}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": "registry.example/app:1", "resources": resources}]}
    if selector is not None:
        spec["nodeSelector"] = selector
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"acme.io/team": "llm", **(labels or {})}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def used(limits: list[dict[str, str]], key: str) -> str:
    return next(item["used"] for item in limits if item["key"] == key)


def may_create_deployments(cluster: Cluster, user: str, namespace: str) -> None:
    cluster.ensure_namespace(namespace)
    cluster.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "deployer", "namespace": namespace},
         "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get", "delete"]}]})
    cluster.apply(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": f"deployer-{user}", "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def as_user(cluster: Cluster, user: str) -> httpx.Client:
    pair = cluster.authority.issue(user, client=True)
    context = ssl.create_default_context(cafile=str(cluster.authority.cert))
    context.load_cert_chain(str(pair.cert), str(pair.key))
    return httpx.Client(base_url=cluster.url, verify=context, timeout=30)


def create(client: httpx.Client, doc: dict[str, Any]) -> httpx.Response:
    namespace = doc["metadata"]["namespace"]
    return client.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", json=doc)


@pytest.fixture
def users(cluster: Cluster) -> Iterator[dict[str, httpx.Client]]:
    may_create_deployments(cluster, "alice", "vision-dev")
    may_create_deployments(cluster, "bob", "llm-dev")
    clients = {"alice": as_user(cluster, "alice"), "bob": as_user(cluster, "bob")}
    yield clients
    for client in clients.values():
        client.close()
    for namespace in ("vision-dev", "llm-dev"):
        cluster.kubectl("delete", "deployments", "--all", "-n", namespace)


def probe() -> dict[str, Any]:
    return deployment("probe", "vision-dev")  # labelled llm in vision-dev: the webhook must deny it


def test_a_namespace_charges_only_the_groups_bound_to_it(
    cluster: Cluster, start_webhook: StartWebhook, users: dict[str, httpx.Client]
) -> None:
    cluster.ensure_namespace("vision-dev")
    hook = start_webhook(POLICY, probe=probe())
    # alice may create in vision-dev only; labelling her Deployment for llm does not make llm pay
    answer = create(users["alice"], deployment("steal", "vision-dev"))
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"] == DENIED + (
        'namespace vision-dev may not charge quota group ai/llm (it binds "llm-dev"); '
        "vision-dev is bound to group ai/vision"
    )
    # llm-dev is not hers to write: the cluster's RBAC refuses before any webhook is asked
    refused = create(users["alice"], deployment("steal", "llm-dev"))
    assert refused.status_code == 403 and "webhook" not in refused.json()["message"]
    # bob may create in llm-dev, which llm binds: admitted and charged there (1 pod × 1 cpu)
    admitted = create(users["bob"], deployment("web", "llm-dev"))
    assert admitted.status_code == 201, admitted.text
    assert used(hook.group("llm")["limits"], "requests.cpu") == "1"


def test_the_model_is_the_one_the_scheduler_enforces(
    cluster: Cluster, start_webhook: StartWebhook, users: dict[str, httpx.Client]
) -> None:
    cluster.ensure_namespace("vision-dev")
    hook = start_webhook(POLICY, probe=probe())
    bob = users["bob"]
    a100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    # pinned to A100 by its nodeSelector, no model label at all: charged to the A100 key (1 pod × 2)
    answer = create(bob, deployment("train", "llm-dev", gpus=2, selector=a100))
    assert answer.status_code == 201, answer.text
    limits = hook.group("llm")["limits"]
    assert used(limits, "requests.nvidia.com/gpu.A100") == "2"
    assert used(limits, "requests.nvidia.com/gpu") == "2"

    # no pin in a group that limits A100: denied naming the label and the values
    answer = create(bob, deployment("anywhere", "llm-dev", gpus=1))
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"] == DENIED + (
        "must pin a gpu model for: part pod (group ai/llm limits requests.nvidia.com/gpu.A100): "
        "set nodeSelector nvidia.com/gpu.product to one gpu model: "
        "A100 (NVIDIA-A100-SXM4-80GB, NVIDIA-A100-PCIE-40GB), T4 (Tesla-T4)"
    )

    # labelled T4 but pinned to A100: denied, the label cannot pick the cheaper key
    answer = create(bob, deployment("cheap", "llm-dev", gpus=1, selector=a100, labels={"acme.io/gpu-model": "T4"}))
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"] == DENIED + (
        "part pod: workload label acme.io/gpu-model says T4 but the pod template pins "
        "nvidia.com/gpu.product to NVIDIA-A100-SXM4-80GB (A100)"
    )
    # nothing more was charged
    assert used(hook.group("llm")["limits"], "requests.nvidia.com/gpu.A100") == "2"
