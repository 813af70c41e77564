"""`quotalang manifests` output against the real kube-apiserver (1.20) and the real kubectl.

* `kubectl apply --dry-run=server` of the whole output, for each way of
  getting a certificate: the apiserver validates every object (schemas, the
  webhook configuration's rules and selectors, RBAC, the PDB, the
  NetworkPolicy) without keeping any.
* `--output-dir`: `kubectl kustomize DIR` accepts the kustomization and
  renders exactly the objects the YAML output holds.
* `--cert-manager`: applied for real, with minimal CustomResourceDefinitions
  for cert-manager's `Issuer` and `Certificate` written here. This checks the
  *shape* of what we emit — the objects are accepted by a schema that lists
  the fields cert-manager v1 defines for them (so a misspelt field would be
  pruned and the read-back would differ), the Certificate's Secret is the one
  the Deployment mounts, its names are the ones the apiserver will call, and
  the `cert-manager.io/inject-ca-from` annotation names that Certificate. It
  does not run cert-manager: issuing and CA injection are cert-manager's
  behaviour, not tested here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.e2e.conftest import REQUIRED
from tests.e2e.kube_cluster import ROOT, Cluster, assets, kubectl_binary

NS = "quota-system"
POLICY = Path(ROOT) / "examples" / "policies"


def require() -> Path:
    folder = assets()
    problem = ("no kube-apiserver/etcd (scripts/provision-kube.sh)" if folder is None
               else "no kubectl (scripts/provision-kube.sh)" if kubectl_binary(folder) is None else None)
    if problem:
        if REQUIRED:
            pytest.fail(f"QUOTALANG_E2E_REQUIRED=1 but {problem}", pytrace=False)
        pytest.skip(problem)
    assert folder is not None
    return folder


IMAGE = "registry.example/quotalang:test"


def generate(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "quotalang.server.cli", "manifests", "--policy", str(POLICY),
                           "--namespace", NS, "--image", IMAGE, "--kube-version", "1.20", *args],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return done.stdout


def parse(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of this module's own: the cert-manager test applies a webhook configuration for real."""
    running = Cluster(require(), tmp_path_factory.mktemp("apply") / "cluster")
    try:
        running.start()
        running.ensure_namespace(NS)  # a dry run creates nothing, so namespaced objects need it to exist
        yield running
    finally:
        running.stop()


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


STRING: dict[str, Any] = {"type": "string"}
STRINGS: dict[str, Any] = {"type": "array", "items": STRING}
FREE: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def cert_manager_crds() -> list[dict[str, Any]]:
    """Issuer and Certificate as cert-manager v1 names them, with the spec fields cert-manager defines.

    Only the fields are listed (not every constraint): enough for a misspelt
    or misplaced field of ours to be pruned, which the test sees on read-back.
    """
    issuer_spec = _schema({"selfSigned": _schema({"crlDistributionPoints": STRINGS}, []), "ca": FREE,
                           "acme": FREE, "vault": FREE, "venafi": FREE}, [])
    certificate_spec = _schema({
        "secretName": STRING, "commonName": STRING, "dnsNames": STRINGS, "ipAddresses": STRINGS,
        "uris": STRINGS, "emailAddresses": STRINGS, "duration": STRING, "renewBefore": STRING,
        "isCA": {"type": "boolean"}, "usages": STRINGS, "revisionHistoryLimit": {"type": "integer"},
        "secretTemplate": FREE, "subject": FREE, "keystores": FREE,
        "privateKey": _schema({"algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                               "encoding": {"type": "string", "enum": ["PKCS1", "PKCS8"]},
                               "size": {"type": "integer"},
                               "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]}}, []),
        "issuerRef": _schema({"name": STRING, "kind": STRING, "group": STRING}, ["name"]),
    }, ["secretName", "issuerRef"])

    def crd(kind: str, plural: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.cert-manager.io"},
            "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "subresources": {"status": {}},
                                   "schema": {"openAPIV3Schema": _schema({
                                       "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
                                       "spec": spec, "status": FREE}, ["spec"])}}]},
        }

    return [crd("Issuer", "issuers", issuer_spec), crd("Certificate", "certificates", certificate_spec)]


@pytest.mark.parametrize("variant", [(), ("--embed-self-signed",), ("--exempt-namespace", "monitoring",
                                                                     "--webhook-from", "10.0.0.0/8",
                                                                     "--priority-class", "", "--replicas", "1"),
                                     ("--aggregated-api",)],
                         ids=["default", "embed-self-signed", "options", "aggregated-api"])
def test_the_whole_output_passes_a_server_side_dry_run(cluster: Cluster, variant: tuple[str, ...]) -> None:
    text = generate(*variant)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in parse(text)]
    for doc in parse(text):
        assert f'{doc["kind"].lower()}' in done.stdout.lower() or doc["kind"] in done.stdout, done.stdout
    assert "NetworkPolicy" in kinds and "PodDisruptionBudget" in kinds and "ValidatingWebhookConfiguration" in kinds
    # Nothing was kept.
    assert cluster.kubectl("get", "validatingwebhookconfiguration", "quotalang", check=False).returncode != 0


def test_kubectl_kustomize_renders_the_output_dir(cluster: Cluster, tmp_path: Path) -> None:
    folder = tmp_path / "install"
    done = subprocess.run([sys.executable, "-m", "quotalang.server.cli", "manifests", "--policy", str(POLICY),
                           "--namespace", NS, "--image", IMAGE, "--kube-version", "1.20", "--output-dir", str(folder)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rendered = cluster.kubectl("kustomize", str(folder))
    ids = sorted((d["kind"], d["metadata"]["name"]) for d in parse(rendered.stdout))
    assert ids == sorted((d["kind"], d["metadata"]["name"]) for d in parse(generate()))
    # What kustomize renders is what `kubectl apply -k` would send: the apiserver accepts it.
    applied = cluster.kubectl("apply", "--dry-run=server", "-k", str(folder), check=False)
    assert applied.returncode == 0, applied.stderr


def test_cert_manager_resources_have_the_shape_cert_manager_reads(cluster: Cluster) -> None:
    """Shape and the inject-ca-from annotation only; cert-manager itself does not run here."""
    for crd in cert_manager_crds():
        cluster.apply(crd)
    for plural in ("issuers", "certificates"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.cert-manager.io", "--timeout=30s")
    text = generate("--cert-manager")
    assert "PRIVATE KEY" not in text
    docs = parse(text)
    try:
        applied = cluster.kubectl("apply", "-f", "-", stdin=text, check=False)
        assert applied.returncode == 0, applied.stderr
        for kind in ("Issuer", "Certificate"):
            printed = next(d for d in docs if d["kind"] == kind)
            stored = orjson.loads(cluster.kubectl("get", kind.lower() + ".cert-manager.io",
                                                  printed["metadata"]["name"], "-n", NS, "-o", "json").stdout)
            assert stored["spec"] == printed["spec"], f"the {kind}'s spec lost fields the schema does not know"
        certificate = next(d for d in docs if d["kind"] == "Certificate")
        hook = orjson.loads(cluster.kubectl("get", "validatingwebhookconfiguration", "quotalang", "-o",
                                            "json").stdout)
        annotation = hook["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert annotation == f"{NS}/{certificate['metadata']['name']}"
        namespace, name = annotation.split("/")
        cluster.kubectl("get", "certificate.cert-manager.io", name, "-n", namespace)  # it names one that exists
        issuer = certificate["spec"]["issuerRef"]
        cluster.kubectl("get", f"{issuer['kind'].lower()}.cert-manager.io", issuer["name"], "-n", NS)
        # The Secret cert-manager will write is the one the Deployment mounts, for the names the apiserver calls.
        pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
        assert {"name": "tls", "secret": {"secretName": certificate["spec"]["secretName"]}} in pod["volumes"]
        for webhook in hook["webhooks"]:
            service = webhook["clientConfig"]["service"]
            assert f"{service['name']}.{service['namespace']}.svc" in certificate["spec"]["dnsNames"]
            assert "caBundle" not in webhook["clientConfig"]  # cert-manager's cainjector fills it
    finally:
        # failurePolicy Fail and nothing serving: leave no webhook behind.
        cluster.kubectl("delete", "validatingwebhookconfiguration", "quotalang", "--ignore-not-found")


@pytest.mark.parametrize("part", ["hub", "east"])
def test_the_hub_and_member_outputs_pass_a_server_side_dry_run(cluster: Cluster, part: str) -> None:
    """`manifests --cluster` (issue 18): the hub's objects and a member's, each dry-run on the real apiserver
    as that cluster would receive them."""
    text = generate("--cluster", "east", "--cluster", "west", "--webhook-url", "https://quota.example.com",
                    "--embed-self-signed", "--only", part)
    docs = parse(text)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    assert done.returncode == 0, done.stderr
    for doc in docs:
        assert doc["kind"].lower() in done.stdout.lower(), (doc["kind"], done.stdout)
    kinds = {d["kind"] for d in docs}
    if part == "hub":  # it decides and keeps the ledger; it is called by no webhook of its own
        assert "Deployment" in kinds and "ValidatingWebhookConfiguration" not in kinds
        args = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--cluster" in args and "east=/etc/quotalang/clusters/east/kubeconfig" in args
    else:  # a member: the webhook calling the hub's route for it, and what the hub's watcher may read
        webhooks = [d for d in docs if d["kind"] == "ValidatingWebhookConfiguration"]
        urls = {w["clientConfig"]["url"] for d in webhooks for w in d["webhooks"]}
        assert "https://quota.example.com/validate/east" in urls
        assert "Deployment" not in kinds and {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"} <= kinds


CHART_VALUES = {
    "defaults": {},
    "sqlite-mtls-selector": {"replicas": 1, "store": {"type": "sqlite", "sqliteClaim": "ledger"},
                             "mutualTLS": {"clientNames": ["kube-apiserver"]},
                             "webhook": {"timeoutSeconds": 10, "namespaceSelector": {"quota": "on"},
                                         "exemptNamespaces": ["monitoring"]},
                             "priorityClassName": "", "pdb": {"enabled": False}},
    "existing-secret": {"tls": {"mode": "existing", "secretName": "corp-tls"},
                        "webhook": {"failurePolicy": "Ignore"}, "networkPolicy": {"webhookFrom": ["10.0.0.0/8"]}},
    "aggregated-api": {"aggregatedAPI": {"enabled": True}},
    "aggregated-api-existing-secret": {"aggregatedAPI": {"enabled": True},
                                       "tls": {"mode": "existing", "secretName": "corp-tls"}},
}


@pytest.mark.parametrize("name", list(CHART_VALUES))
def test_the_charts_rendering_passes_a_server_side_dry_run(cluster: Cluster, name: str) -> None:
    """charts/quotalang rendered by Helm's library (kubeVersion 1.20, this apiserver) for a matrix of values."""
    from quotalang.server.manifests import Options
    from quotalang.server.manifests.chart import chart_values
    from quotalang.server.tls import make_ca
    from tests.chart_render import render_text

    ca = make_ca("chart test CA").cert
    values = chart_values([str(POLICY)], Options(IMAGE, kube_version=(1, 20)))
    change = CHART_VALUES[name]
    for key, value in change.items():
        values[key] = values[key] | value if isinstance(value, dict) and isinstance(values.get(key), dict) else value
    values["mutualTLS"]["clientCA"] = ca.decode() if "mutualTLS" in change else ""
    if values["tls"]["mode"] == "existing":
        values["tls"]["caBundle"] = ca.decode()
    text = render_text(values, NS)
    done = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
    assert done.returncode == 0, done.stderr
    docs = parse(text)
    assert len(done.stdout.strip().splitlines()) == len(docs), done.stdout
    webhook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
    assert webhook["timeoutSeconds"] == (10 if name == "sqlite-mtls-selector" else 5)
    assert cluster.kubectl("get", "validatingwebhookconfiguration", "quotalang", check=False).returncode != 0
