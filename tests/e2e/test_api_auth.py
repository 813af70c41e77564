"""The API port against a real apiserver: TokenReview and SubjectAccessReview decide who reads.

`quotalang serve` runs as a process under the identity the manifests give it
(ServiceAccount `quotalang` bound to the ClusterRole `rbac()` prints, renamed
here so the install test's objects stay its own), through a kubeconfig that
holds that ServiceAccount's token from the TokenRequest API. Two more
ServiceAccounts ask: `reader`, bound to the manifests' `quotalang-viewer` and
`quotalang-metrics-reader`, and `stranger`, bound to nothing. Their tokens
come from the TokenRequest API too: the apiserver's own, nothing forged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quotalang.compiler import compile_policy
from quotalang.server.manifests import rbac
from tests.e2e.kube_cluster import Cluster, Webhook

NS = "e2e-api-auth"
SERVE_ROLE = "quotalang-e2e-api-auth"
POLICY = """\
settings {
  group label  "quota.group"
}
group api-root {
  requests.cpu  20
}
group api-team in api-root {
  requests.cpu  4
}
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def token(cluster: Cluster, account: str) -> str:
    """A bound token for a ServiceAccount in NS, from the TokenRequest API."""
    return cluster.token(NS, account)


def account(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NS}}


def bind(name: str, role: str, subject: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": subject, "namespace": NS}]}


def serve_identity(cluster: Cluster, policy: Path, folder: Path) -> Path:
    """The manifests' RBAC for serve (its ClusterRole renamed), and a kubeconfig with its token."""
    cluster.ensure_namespace(NS)
    for doc in rbac(compile_policy(str(policy)), NS, keeps_secret=False):
        if doc["kind"] in ("ClusterRole", "ClusterRoleBinding") and doc["metadata"]["name"] == "quotalang":
            doc["metadata"]["name"] = SERVE_ROLE
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] = SERVE_ROLE
        cluster.apply(doc)
    return cluster.kubeconfig_as(folder / "serve-kubeconfig", NS, "quotalang")


@pytest.fixture
def hook(cluster: Cluster, tmp_path: Path) -> Iterator[Webhook]:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "org.quota").write_text(POLICY)
    kubeconfig = serve_identity(cluster, policy, tmp_path)
    for doc in (account("reader"), account("stranger"), bind("e2e-api-reader-viewer", "quotalang-viewer", "reader"),
                bind("e2e-api-reader-metrics", "quotalang-metrics-reader", "reader")):
        cluster.apply(doc)
    started = Webhook(cluster, policy, tmp_path / "webhook", ("--kubeconfig", str(kubeconfig)), api_auth=True)
    started.start()
    yield started
    started.stop()


def test_no_token_a_stranger_and_a_reader(cluster: Cluster, hook: Webhook) -> None:
    reader, stranger = token(cluster, "reader"), token(cluster, "stranger")
    for path in ("/metrics", "/api/groups", "/api/groups/api-tem"):
        with hook.http(api=True) as client:
            answer = client.get(path)
        assert answer.status_code == 401, (path, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")

        with hook.http(api=True, token="eyJhbGciOiJSUzI1NiJ9.e30.Zm9yZ2Vk") as client:
            forged = client.get(path)
        assert forged.status_code == 401, (path, forged.text)
        assert "not accepted by the apiserver" in forged.json()["message"]

        with hook.http(api=True, token=stranger) as client:
            refused = client.get(path)
        assert refused.status_code == 403, (path, refused.text)
        message = refused.json()["message"]
        assert message.startswith(f"system:serviceaccount:{NS}:stranger may not get ")
        assert "api-team" not in message  # no near names without the grant

    with hook.http(api=True, token=reader) as client:
        assert "quotalang_" in client.get("/metrics").text
        groups = client.get("/api/groups")
        assert groups.status_code == 200
        assert {g["name"] for g in groups.json()} == {"api-root", "api-team"}
        near = client.get("/api/groups/api-tem")
        assert near.status_code == 404
        assert "did you mean api-team" in near.json()["message"]
        assert client.get("/").status_code == 200  # the pages
        explained = client.post("/api/explain", json={
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NS, "labels": {"quota.group": "api-team"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "c", "image": "x", "resources": {"requests": {"cpu": "1"}}}]}}}})
        assert explained.status_code == 200, explained.text
        assert explained.json()["allowed"] is True
        for _ in range(5):  # answered from the gate's cache
            assert client.get("/metrics").status_code == 200

    with hook.http() as client:  # the admission port reads nothing, token or not
        assert client.get("/metrics", headers={"authorization": f"Bearer {reader}"}).status_code == 404
        assert client.get("/api/groups").status_code == 404
