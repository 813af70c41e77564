"""Only the apiserver may ask: a real kube-apiserver presents a client certificate to `serve --client-ca`.

This module starts its own apiserver (with etcd), because the client
certificate is configured at its start: `--admission-control-config-file`
names an `AdmissionConfiguration` whose webhook kubeconfig holds a client
pair signed by the cluster's CA (common name `kube-apiserver-webhook-client`).
The webhook runs with `--client-ca` that CA and `--client-name` that name.

Shown: the apiserver's calls pass (a Deployment that fits is admitted, one
over quota is denied with our message); forged reviews with no certificate
(401), another CA's certificate (handshake refused) or this CA's certificate
with another name (401) are refused and reserve nothing — after forging
reviews that would fill the group, the apiserver still admits what fits.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from quotalang.compiler import compile_policy
from quotalang.server.manifests import webhook_rules
from tests.e2e.conftest import REQUIRED, wait_for_webhook
from tests.e2e.kube_cluster import Authority, Cluster, Pair, Webhook, assets

CLIENT_NAME = "kube-apiserver-webhook-client"
POLICY = """\
import "quotalang:policies"

settings {
  group label "quota.group"
}

group root {
  requests.cpu 20
}

group team-a in root {
  requests.cpu 4
}

group team-b in root {
  requests.cpu 1
}
"""


def deployment(name: str, replicas: int, group: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "mtls", "labels": {"quota.group": group}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                                  "resources": {"requests": {"cpu": "1"}}}]}},
        },
    }


def forged(name: str, group: str = "team-b", dry_run: bool = False) -> bytes:
    """A CREATE review of one 1-cpu pod: in team-b, enough to spend its whole quota."""
    obj = deployment(name, 1, group)
    return orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"forged-{name}", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": name, "namespace": "mtls", "operation": "CREATE", "userInfo": {"username": "mallory"},
        "object": obj, "oldObject": None, "dryRun": dry_run}})


@pytest.fixture(scope="module")
def mtls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Pair]]:
    folder = assets()
    if folder is None:
        message = "no kube-apiserver/etcd: run scripts/provision-kube.sh or set KUBEBUILDER_ASSETS"
        if REQUIRED:
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {message}", pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("mtls-cluster")
    running = Cluster(folder, root)
    client = running.authority.issue(CLIENT_NAME, client=True)
    kubeconfig = root / "webhook-kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        # "*": every webhook this apiserver calls gets this client certificate.
        "users": [{"name": "*", "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
    }))
    admission = root / "admission.yaml"
    admission.write_text(yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
        "plugins": [{"name": "ValidatingAdmissionWebhook", "configuration": {
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
            "kubeConfigFile": str(kubeconfig)}}],
    }))
    running.apiserver_args = ("--admission-control-config-file", str(admission))
    try:
        running.start()
        running.ensure_namespace("mtls")
        yield running, client
    finally:
        running.stop()


@pytest.fixture(scope="module")
def hook(mtls_cluster: tuple[Cluster, Pair], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    cluster, _ = mtls_cluster
    folder = tmp_path_factory.mktemp("mtls-webhook")
    (folder / "policy").mkdir()
    (folder / "policy" / "org.quota").write_text(POLICY)
    webhook = Webhook(cluster, folder / "policy", folder / "serve",
                      ("--client-ca", str(cluster.authority.cert), "--client-name", CLIENT_NAME))
    webhook.start()  # its readiness probe carries no certificate: /readyz stays open
    try:
        webhook.register(webhook_rules(compile_policy(str(folder / "policy"))))
        wait_for_webhook(cluster, deployment("probe", 1, group="no-such-group"))
        yield webhook
    finally:
        webhook.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", "quotalang-e2e", "--ignore-not-found")


def post(hook: Webhook, body: bytes, pair: Pair | None, ca: Path) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(ca))
    if pair is not None:
        context.load_cert_chain(str(pair.cert), str(pair.key))
    with httpx.Client(verify=context, timeout=10) as client:
        return client.post(f"{hook.url}/validate", content=body, headers={"content-type": "application/json"})


def test_the_apiservers_calls_pass_mutual_tls(mtls_cluster: tuple[Cluster, Pair], hook: Webhook) -> None:
    cluster, _ = mtls_cluster
    cluster.create(deployment("web", 3))  # 3 of 4 cpu
    denied = cluster.create(deployment("batch", 2), check=False)
    assert denied.returncode != 0
    assert "requests.cpu: requested 2" in denied.stderr and "used 3 of 4, 1 free" in denied.stderr
    cluster.kubectl("delete", "deployment", "web", "-n", "mtls")


def test_forged_reviews_are_refused_and_reserve_nothing(
    mtls_cluster: tuple[Cluster, Pair], hook: Webhook, tmp_path: Path
) -> None:
    cluster, apiserver = mtls_cluster
    ca = cluster.authority.cert
    someone = cluster.authority.issue("someone-else", client=True)
    stranger = Authority(tmp_path).issue(CLIENT_NAME, client=True)  # the right name from another CA

    answer = post(hook, forged("hog-1"), None, ca)
    assert answer.status_code == 401 and "client certificate" in answer.json()["message"]
    answer = post(hook, forged("hog-2"), someone, ca)
    assert answer.status_code == 401 and "not one of --client-name" in answer.json()["message"]
    with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        post(hook, forged("hog-3"), stranger, ca)

    # Had any of them been admitted, team-b's 1 cpu would be spent: the apiserver's own call still fits.
    assert cluster.create(deployment("fits", 1, group="team-b")).returncode == 0
    # And the certificate is what lets a review in (the port is not simply closed): a dry run, to keep nothing.
    answer = post(hook, forged("direct", group="team-a", dry_run=True), apiserver, ca)
    assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
