"""The Helm chart renders what `quotalang manifests` prints (one install, two ways), and lints clean.

For each set of options in the matrix, the chart is rendered with Helm's own
library from `chart_values(options)` and compared, object by object, with
`manifests(options)`. Namespaces are compared apart: the chart makes its own
only with namespace.create, and never labels kube-system (Helm would own it).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang.controller.ledger import crd_schema as ledger_crd
from quotalang.server.manifests import Options, manifests
from quotalang.server.manifests.chart import chart_values, kinds
from quotalang.server.manifests.policyfiles import policy_files
from tests.chart_render import CHART, lint, render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
LIBRARY_POLICY = Path(__file__).resolve().parent / "data" / "library-policy"  # imports every shipped kind file
NS = "quota-system"
IMAGE = "registry.example/quotalang:0.1.0"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIBdummy\n-----END CERTIFICATE-----\n"

MATRIX = {
    "defaults": Options(IMAGE),
    "kube-1.20": Options(IMAGE, kube_version=(1, 20), exempt_namespaces=("monitoring", "gpu-operator")),
    "kube-1.33": Options(IMAGE, kube_version=(1, 33)),  # pods/resize is routed
    "cert-manager": Options(IMAGE, cert_manager=True, replicas=3, metrics_from_namespace="monitoring",
                            prometheus_operator=True),
    "cert-manager-issuer": Options(IMAGE, cert_manager=True, cert_manager_issuer=("ClusterIssuer", "corp-ca")),
    "existing-secret": Options(IMAGE, tls_secret="corp-tls", ca_bundle=PEM, failure_policy="Ignore",
                               prometheus_operator=True),
    "sqlite-mtls": Options(IMAGE, store="sqlite", sqlite_claim="ledger", replicas=1, client_ca=PEM,
                           client_names=("kube-apiserver",), timeout_seconds=10, namespace_selector={"quota": "on"},
                           priority_class=None, webhook_from=("10.0.0.0/8",)),
    "aggregated-api": Options(IMAGE, aggregated_api=True, webhook_from=("10.0.0.0/8",)),  # serve's own CA
    "aggregated-api-cert-manager": Options(IMAGE, aggregated_api=True, cert_manager=True),
    "aggregated-api-existing-secret": Options(IMAGE, aggregated_api=True, tls_secret="corp-tls", ca_bundle=PEM),
    "bare": Options(IMAGE, pdb=False, network_policy=False, resources={"requests": {"cpu": "1"}},
                    pod_security_context={"runAsNonRoot": True}, container_security_context={"privileged": False}),
}


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def _plain(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    return {_key(d): json.loads(json.dumps(d)) for d in docs}


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_chart_renders_exactly_what_manifests_prints(name: str) -> None:
    options = MATRIX[name]
    values = chart_values([str(EXAMPLES)], options)
    chart = _plain(render(values, NS))
    printed = _plain([d for d in manifests([str(EXAMPLES)], NS, options) if d["kind"] != "Namespace"])
    assert sorted(chart) == sorted(printed)
    for key, doc in printed.items():
        assert chart[key] == doc, key


@pytest.mark.parametrize("name", list(MATRIX))
def test_the_chart_lints_clean_in_strict_mode(name: str) -> None:
    report = lint(chart_values([str(EXAMPLES)], MATRIX[name]))
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_comparison_sees_a_difference() -> None:
    """The equality above can fail: two replicas in the chart are not three in the manifests."""
    values = chart_values([str(EXAMPLES)], Options(IMAGE, replicas=2))
    chart = _plain(render(values, NS))
    printed = _plain(manifests([str(EXAMPLES)], NS, Options(IMAGE, replicas=3)))
    assert chart[("Deployment", "quotalang")]["spec"]["replicas"] == 2
    assert printed[("Deployment", "quotalang")]["spec"]["replicas"] == 3


def test_namespace_create_gives_the_restricted_namespace_manifests_prints() -> None:
    values = chart_values([str(EXAMPLES)], Options(IMAGE)) | {"namespace": {"create": True}}
    made = [d for d in render(values, NS) if d["kind"] == "Namespace"]
    assert made == [d for d in manifests([str(EXAMPLES)], NS, Options(IMAGE)) if d["kind"] == "Namespace"]
    assert made[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_default_values_are_the_manifests_defaults() -> None:
    """values.yaml is written by hand: every default but the image and policy is `Options`' own."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    expected = chart_values([str(EXAMPLES)], Options(IMAGE))
    for key in ("image", "policy", "kinds"):
        expected.pop(key)
    assert defaults.pop("image") == "" and defaults.pop("policy") == {"files": {}}
    default_kinds = defaults.pop("kinds")
    assert defaults.pop("namespace") == {"create": False}
    assert defaults == expected
    # The default kinds: every kind of the shipped library (by hand: 15, Pod last).
    assert default_kinds == kinds(policy_files([str(LIBRARY_POLICY)])[0])
    assert len(default_kinds) == 15 and default_kinds[-1] == {"group": "", "version": "v1", "resource": "pods",
                                                               "scale": False}


def test_the_crd_template_is_the_ledger_crd() -> None:
    values = chart_values([str(EXAMPLES)], Options(IMAGE))
    crds = [d for d in render(values, NS) if d["kind"] == "CustomResourceDefinition"]
    assert crds == [json.loads(json.dumps(ledger_crd.crd()))]


def test_the_policy_comes_from_the_charts_policy_folder(tmp_path: Path) -> None:
    """GitOps: without policy.files the chart reads its policy/ folder, so a policy change is a .quota diff."""
    chart = tmp_path / "quotalang"
    shutil.copytree(CHART, chart)
    for file in EXAMPLES.glob("*.quota"):
        shutil.copy(file, chart / "policy" / file.name)
    values = chart_values([str(EXAMPLES)], Options(IMAGE))
    files = values.pop("policy")["files"]
    config = next(d for d in render(values, NS, chart) if _key(d) == ("ConfigMap", "quotalang-policy"))
    assert config["data"] == files
    assert sorted(files) == ["ai-platform.quota", "data.quota", "online-services.quota", "root.quota",
                             "settings.quota"]


@pytest.mark.parametrize(("change", "said"), [
    ({"image": ""}, "image: the image reference"),
    ({"policy": {"files": {}}}, "no policy"),
    ({"store": {"type": "sqlite", "sqliteClaim": "x"}}, "replicas 1"),
    ({"tls": {"mode": "existing", "secretName": "", "caBundle": ""}}, "tls.secretName"),
])
def test_the_chart_refuses_an_incomplete_install_with_a_clear_message(change: dict[str, Any], said: str) -> None:
    values = chart_values([str(EXAMPLES)], Options(IMAGE)) | change
    with pytest.raises(Exception, match=said):
        render(values, NS)
