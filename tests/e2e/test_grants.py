"""`authorize users` on a real apiserver: in a namespace two groups share, charging a group needs the user's
`use` grant on it, asked of the apiserver with a SubjectAccessReview by `serve --kubeconfig`.

Users are client certificates the apiserver's CA signed: alice and bob may both create Deployments and
ReplicaSets in `shared`; only bob is bound to the ClusterRole `quotalang manifests --grant-role llm` prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from quotalang.server.manifests import group_user_role
from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster
from tests.e2e.test_bindings import DENIED, as_user, deployment, used
from tests.server.test_grants import NO_GRANT
from tests.server.test_grants import POLICY as UNIT_POLICY

# the unit tests' policy (llm and vision share `shared`, bound on their parent), read by the bindings e2e label
POLICY = UNIT_POLICY.replace('group label "team"', 'group label "acme.io/team"')


def rbac(cluster: Cluster) -> None:
    cluster.ensure_namespace("shared")
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "deployer", "namespace": "shared"},
            "rules": [{"apiGroups": ["apps"], "resources": ["deployments", "replicasets"],
                       "verbs": ["create", "get", "delete"]}]}
    cluster.apply(role)
    cluster.apply(group_user_role("llm"))
    for name, role_kind, role_name in (("alice", "Role", "deployer"), ("bob", "Role", "deployer"),
                                       ("bob", "ClusterRole", "quotalang-use-llm")):
        cluster.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": f"{role_name}-{name}", "namespace": "shared"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
                       "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]})


@pytest.fixture
def users(cluster: Cluster) -> Iterator[dict[str, httpx.Client]]:
    rbac(cluster)
    clients = {"alice": as_user(cluster, "alice"), "bob": as_user(cluster, "bob")}
    yield clients
    for client in clients.values():
        client.close()
    cluster.kubectl("delete", "deployments,replicasets", "--all", "-n", "shared")


def probe() -> dict[str, Any]:
    body = deployment("probe", "shared")
    body["metadata"]["labels"]["acme.io/team"] = "nobody"  # an unknown group: denied whoever asks
    return body


def test_charging_a_shared_namespace_needs_the_use_grant(
    cluster: Cluster, start_webhook: StartWebhook, users: dict[str, httpx.Client]
) -> None:
    hook = start_webhook(POLICY, "--kubeconfig", str(cluster.kubeconfig), probe=probe())
    alice, bob = users["alice"], users["bob"]

    # alice may create in shared, but has no `use` on llm: the webhook denies, naming what to bind
    answer = alice.post("/apis/apps/v1/namespaces/shared/deployments", json=deployment("steal", "shared"))
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"] == DENIED + NO_GRANT

    # bob holds the grant (a RoleBinding to quotalang-use-llm in shared): admitted, 1 pod × 1 cpu charged
    admitted = bob.post("/apis/apps/v1/namespaces/shared/deployments", json=deployment("web", "shared"))
    assert admitted.status_code == 201, admitted.text
    owner = admitted.json()["metadata"]

    # the Deployment's ReplicaSet, as its controller would make it (no controller-manager runs here): its
    # owner is charged, so it is not asked about — alice, who would be refused, creates it
    child = deployment("web-5d9", "shared")
    child["kind"] = "ReplicaSet"
    child["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                             "uid": owner["uid"], "controller": True}]
    owned = alice.post("/apis/apps/v1/namespaces/shared/replicasets", json=child)
    assert owned.status_code == 201, owned.text
    assert used(hook.group("llm")["limits"], "requests.cpu") == "1"  # the Deployment's, not twice

    # the webhook's own count: alice's Deployment is the one denial of this test (the probes are dry runs
    # of Deployments), and no ReplicaSet was denied
    with hook.http(api=True) as client:
        metrics = client.get("/metrics").text
    denied = [line for line in metrics.splitlines()
              if line.startswith("quotalang_admissions_total{") and 'decision="deny"' in line]
    assert not [line for line in denied if 'kind="ReplicaSet"' in line], denied
    llm = [line for line in denied if 'group="llm"' in line]
    assert len(llm) == 1 and llm[0].endswith(" 1.0"), denied
