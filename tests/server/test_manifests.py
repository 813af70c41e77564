"""`quotalang manifests`: the YAML parses and holds what a cluster needs, least privilege included."""

from __future__ import annotations

import base64
import io
import itertools
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cryptography import x509

from quotalang.errors import InputError
from quotalang.server.cli import main
from quotalang.server.manifests import Options, manifests
from quotalang.server.tls import issue, make_ca

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
IMAGE = "registry.example/quotalang:test"


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["manifests", *args, *(() if "--image" in args else ("--image", IMAGE))], out)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "quota-system")
    assert code == 0
    assert text.startswith("# quotalang webhook for namespace quota-system")
    return [d for d in yaml.safe_load_all(text) if d is not None]


def find(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def test_every_object_is_there_in_apply_order(docs: list[dict[str, Any]]) -> None:
    assert [d["kind"] for d in docs] == [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRole",  # quotalang-viewer
        "ClusterRole",  # quotalang-metrics-reader
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ValidatingWebhookConfiguration",
    ]
    namespaced = [
        d
        for d in docs
        if d["kind"]
        not in ("CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding",
                "ValidatingWebhookConfiguration")
    ]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"quota-system"}


def test_the_webhook_rules_cover_every_kind_its_scale_and_hpas(docs: list[dict[str, Any]]) -> None:
    hook = find(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["timeoutSeconds"] == 5
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"] == {
        "namespace": "quota-system",
        "name": "quotalang",
        "path": "/validate",
        "port": 443,
    }
    rules = {(r["apiGroups"][0], r["apiVersions"][0]): r for r in hook["rules"]}
    assert all(r["operations"] == ["CREATE", "UPDATE"] for r in hook["rules"])
    assert rules["apps", "v1"]["resources"] == [
        "deployments",
        "deployments/scale",
        "replicasets",
        "replicasets/scale",
        "statefulsets",
        "statefulsets/scale",
    ]
    assert rules["", "v1"]["resources"] == ["pods"]  # a Pod rule names no scale path
    assert rules["batch", "v1"]["resources"] == ["cronjobs", "jobs"]
    assert "tfjobs" in rules["kubeflow.org", "v1"]["resources"]
    assert "mpijobs" in rules["kubeflow.org", "v2beta1"]["resources"]
    assert {"rayclusters", "rayjobs"} <= set(rules["ray.io", "v1"]["resources"])
    assert rules["autoscaling", "*"]["resources"] == ["horizontalpodautoscalers"]
    assert hook["namespaceSelector"] == {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "quota-system"]},
    ]}
    # From 1.21 the name label is the apiserver's: no label of ours, no namespace webhook.
    assert len(find(docs, "ValidatingWebhookConfiguration")["webhooks"]) == 1
    assert "quotalang.dev/exempt" not in yaml.safe_dump_all(docs)


def test_rbac_grants_only_what_the_code_calls(docs: list[dict[str, Any]]) -> None:
    rules = find(docs, "ClusterRole")["rules"]
    by_verbs: dict[tuple[str, ...], dict[str, list[str]]] = {}
    for rule in rules:
        by_verbs.setdefault(tuple(rule["verbs"]), {})[rule["apiGroups"][0]] = rule["resources"]
    watched = by_verbs[("list", "watch")]
    assert watched[""] == ["limitranges", "pods"]  # LimitRange defaults: every replica watches them
    assert watched["apps"] == ["deployments", "replicasets", "statefulsets"]
    assert "tfjobs" in watched["kubeflow.org"]
    assert by_verbs[("get",)]["apps"] == ["deployments", "replicasets", "statefulsets"]  # /scale parents
    assert {"apiGroups": ["quotalang.dev"], "resources": ["quotaledgers"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"]} in rules
    # serve --store kubernetes reads the CRD at start (it exited 2 with 403 without this rule).
    assert {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
            "resourceNames": ["quotaledgers.quotalang.dev"], "verbs": ["get"]} in rules
    assert {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingwebhookconfigurations"],
            "resourceNames": ["quotalang"], "verbs": ["get", "update"]} in rules
    # The API port's TokenReview and SubjectAccessReview (server/apiauth.py): create, the reviews' one verb.
    assert {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]} in rules
    assert {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]} in rules
    # Reclaim (issue 29, controller/reclaim.py) reads a borrower and patches its suspend path: get + patch
    # on exactly the kinds whose rule names one, and an Event per reclaim; no deletes without `reclaim by delete`.
    assert by_verbs[("get", "patch")] == {"batch": ["jobs"], "jobset.x-k8s.io": ["jobsets"],
                                          "kubeflow.org": ["mpijobs", "pytorchjobs", "tfjobs"], "ray.io": ["rayjobs"]}
    assert by_verbs[("create",)][""] == ["events"]
    assert ("delete",) not in by_verbs
    assert not any(verb in r["verbs"] for r in rules for verb in ("*", "deletecollection"))
    patching = [{"apiGroups": [g], "resources": res, "verbs": ["get", "patch"]}
                for g, res in by_verbs[("get", "patch")].items()]
    assert not any("patch" in r["verbs"] for r in rules if r not in patching)
    role = find(docs, "Role")
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["quotalang-ledger-leader"],
         "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["quotalang-tls"], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    binding = find(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "quotalang", "namespace": "quota-system"}
    ]


def test_reader_roles_grant_the_whole_tree_or_metrics_and_bind_nobody(docs: list[dict[str, Any]]) -> None:
    roles = {d["metadata"]["name"]: d["rules"] for d in docs if d["kind"] == "ClusterRole"}
    assert roles["quotalang-viewer"] == [
        {"apiGroups": ["quotalang.dev"], "resources": ["groups"], "verbs": ["get"]},
        {"apiGroups": ["quotalang.dev"], "resources": ["groups/explain"], "verbs": ["create"]},
    ]
    assert roles["quotalang-metrics-reader"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    bound = {d["roleRef"]["name"] for d in docs if d["kind"] in ("ClusterRoleBinding", "RoleBinding")}
    assert bound == {"quotalang"}  # admins bind teams and Prometheus themselves


def test_by_default_nothing_secret_is_printed_and_serve_keeps_the_certificate(docs: list[dict[str, Any]]) -> None:
    assert "Secret" not in [d["kind"] for d in docs]
    assert "PRIVATE KEY" not in yaml.safe_dump_all(docs)
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--cert-secret") + 1] == "quotalang-tls"
    assert args[args.index("--webhook-configuration") + 1] == "quotalang"
    assert "--tls-cert" not in args
    assert "caBundle" not in find(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]


def test_cert_manager_issues_the_certificate_and_injects_the_ca() -> None:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--cert-manager")
    assert code == 0 and "PRIVATE KEY" not in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    certificate = find(docs, "Certificate")
    assert certificate["spec"]["secretName"] == "quotalang-tls"
    assert certificate["spec"]["issuerRef"] == {"name": "quotalang-selfsigned", "kind": "Issuer"}
    assert "quotalang.q.svc" in certificate["spec"]["dnsNames"]
    hook = find(docs, "ValidatingWebhookConfiguration")
    assert hook["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "q/quotalang-serving"}
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "quotalang-tls"}} in pod["volumes"]
    rules = find(docs, "ClusterRole")["rules"] + find(docs, "Role")["rules"]
    assert not any("secrets" in r["resources"] or "validatingwebhookconfigurations" in r["resources"] for r in rules)


def test_ways_to_get_a_certificate_exclude_each_other() -> None:
    with pytest.raises(InputError, match="choose one"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, cert_manager=True, embed_self_signed=True))


def test_the_pdb_api_follows_the_kube_version() -> None:
    old = manifests([str(EXAMPLES)], "q", Options(IMAGE, kube_version=(1, 20)))
    assert find(old, "PodDisruptionBudget")["apiVersion"] == "policy/v1beta1"
    assert run("--policy", str(EXAMPLES), "--namespace", "q", "--kube-version", "banana")[0] == 2


def test_pods_resize_is_routed_where_the_cluster_has_it() -> None:
    """In-place resize (pods/resize, Kubernetes 1.33) changes what a pod charges: the webhook decides it."""
    def resources(version: tuple[int, int]) -> set[str]:
        config = find(manifests([str(EXAMPLES)], "q", Options(IMAGE, kube_version=version)),
                      "ValidatingWebhookConfiguration")
        return {r for rule in config["webhooks"][0]["rules"] for r in rule["resources"]}

    assert "pods/resize" in resources((1, 33)) and "pods" in resources((1, 33))
    assert "pods/resize" not in resources((1, 32))  # an older apiserver refuses a rule it does not serve


def test_the_deployment_is_ready_for_production(docs: list[dict[str, Any]]) -> None:
    deployment = find(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert container["args"][:3] == ["serve", "--policy", "/etc/quotalang/policy"]
    assert container["args"][3:9] == ["--host", "0.0.0.0", "--port", "8443", "--api-port", "8444"]
    assert container["ports"] == [{"name": "https", "containerPort": 8443}, {"name": "api", "containerPort": 8444}]
    # Two replicas must share one ledger: a memory store each would admit up to twice the quota.
    assert container["args"][-3:] == ["--in-cluster", "--store", "kubernetes"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "scheme": "HTTPS", "port": "https"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"] == {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    assert (
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0][
            "podAffinityTerm"
        ]["topologyKey"]
        == "kubernetes.io/hostname"
    )
    assert pod["serviceAccountName"] == "quotalang"
    # maxUnavailable 1: a drain may always evict one pod, even at one replica on one node.
    assert find(docs, "PodDisruptionBudget")["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}
    # Pod Security "restricted", and the pod satisfies it with a read-only root and an emptyDir /tmp.
    labels = find(docs, "Namespace")["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{m}"] for m in ("enforce", "audit", "warn")} == {"restricted"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    args = container["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--exempt-namespace"] == ["kube-system", "quota-system"]
    assert find(docs, "Service")["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https"},
                                                      {"name": "api", "port": 8444, "targetPort": "api"}]


def test_the_configmap_holds_the_policy_files_and_not_the_library(docs: list[dict[str, Any]]) -> None:
    data = find(docs, "ConfigMap")["data"]
    assert sorted(data) == sorted(p.name for p in EXAMPLES.glob("*.quota"))
    assert data["settings.quota"] == (EXAMPLES / "settings.quota").read_text()


def test_embed_self_signed_prints_a_key_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "quota-system", "--embed-self-signed")
    assert code == 0
    assert "warning: --embed-self-signed prints a private key" in capsys.readouterr().err
    assert "# WARNING: this output holds a private key" in text
    docs = [d for d in yaml.safe_load_all(text) if d]
    secret = find(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    cert = base64.b64decode(secret["data"]["tls.crt"])
    assert b"PRIVATE KEY" in base64.b64decode(secret["data"]["tls.key"])
    bundle = base64.b64decode(
        find(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]
    )
    ca = x509.load_pem_x509_certificate(bundle)
    serving = x509.load_pem_x509_certificate(cert)
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "quotalang.quota-system.svc" in names.get_values_for_type(x509.DNSName)
    assert b"PRIVATE KEY" not in bundle


def test_an_existing_secret_can_be_used_instead(tmp_path: Path) -> None:
    ca = make_ca()
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    code, text = run(
        "--policy",
        str(EXAMPLES),
        "--namespace",
        "q",
        "--tls-secret",
        "from-cert-manager",
        "--ca-bundle",
        str(tmp_path / "ca.crt"),
        "--failure-policy",
        "Ignore",
        "--replicas",
        "1",
    )
    assert code == 0
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert "Secret" not in [d["kind"] for d in docs]
    assert "PRIVATE KEY" not in text
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "from-cert-manager"}} in pod["volumes"]
    assert pod["containers"][0]["args"][pod["containers"][0]["args"].index("--failure-mode") + 1] == "allow"
    hook = find(docs, "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore"
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca.cert
    assert ssl.PEM_cert_to_DER_cert(ca.cert.decode())  # a real PEM went in


def test_json_output_is_a_list(tmp_path: Path) -> None:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--format", "json")
    assert code == 0
    body = orjson.loads(text)
    assert body["kind"] == "List"
    assert body["items"][-1]["kind"] == "ValidatingWebhookConfiguration"


def test_imports_from_outside_the_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "shared.quota").write_text("kind v1 Pod {\n  pods {\n    template .\n  }\n}\n")
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "org.quota").write_text('import "../shared.quota"\n\ngroup root {\n  pods 10\n}\n')
    with pytest.raises(InputError, match="outside the policy directory"):
        manifests([str(policy)], "q", Options(IMAGE))
    assert run("--policy", str(policy), "--namespace", "q")[0] == 2


def test_tls_secret_needs_a_ca_bundle() -> None:
    with pytest.raises(InputError, match="go together"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, tls_secret="s"))


def test_issue_names_every_host() -> None:
    pair = issue(make_ca(), ["a.example", "10.0.0.1"])
    names = (
        x509.load_pem_x509_certificate(pair.cert)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert names.get_values_for_type(x509.DNSName) == ["a.example"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]


def test_before_1_21_exemption_is_a_label_only_listed_namespaces_may_carry() -> None:
    docs = manifests([str(EXAMPLES)], "q", Options(IMAGE, kube_version=(1, 20), exempt_namespaces=("monitoring",)))
    label = "quotalang.dev/exempt"
    quota, guard = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert quota["namespaceSelector"] == {"matchExpressions": [{"key": label, "operator": "DoesNotExist"}]}
    # The guard sees namespace writes where the old or new object has the label, and fails closed.
    assert guard["name"] == "namespaces.quotalang.dev"
    assert guard["objectSelector"] == {"matchExpressions": [{"key": label, "operator": "Exists"}]}
    assert guard["failurePolicy"] == "Fail"
    assert guard["sideEffects"] == "None"
    assert guard["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                               "resources": ["namespaces"], "scope": "Cluster"}]
    assert guard["clientConfig"]["service"] == {"namespace": "q", "name": "quotalang", "path": "/validate-namespaces",
                                                "port": 443}
    # The manifests label kube-system and their own namespace, before the webhooks exist.
    namespaces = {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs if d["kind"] == "Namespace"}
    assert namespaces["kube-system"] == {label: "true"}
    assert namespaces["q"][label] == "true"
    assert "monitoring" not in namespaces  # `kubectl delete -f` would delete it
    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--exempt-namespace"] == ["kube-system", "monitoring", "q"]


def test_the_header_says_which_exempt_namespaces_to_label_by_hand() -> None:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--kube-version", "1.20",
                     "--exempt-namespace", "monitoring")
    assert code == 0
    assert "# Exempt namespace monitoring: kubectl label namespace monitoring quotalang.dev/exempt=true" in text
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--exempt-namespace", "monitoring")
    assert code == 0 and "kubectl label" not in text  # 1.21: by name, nothing to label
    docs = [d for d in yaml.safe_load_all(text) if d]
    selector = find(docs, "ValidatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"]
    assert selector["matchExpressions"][0]["values"] == ["kube-system", "monitoring", "q"]


@pytest.mark.parametrize("name", ["Kube-System", "a b", "-x", "x" * 64, "a/b", ""])
def test_a_bad_namespace_name_is_a_clear_error(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="is not a namespace name"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, exempt_namespaces=(name,)))
    assert run("--policy", str(EXAMPLES), f"--namespace={name}")[0] == 2
    err = capsys.readouterr().err
    assert "--namespace" in err and "is not a namespace name" in err and "Traceback" not in err
    with pytest.raises(InputError, match="--metrics-from-namespace"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, metrics_from_namespace=name))


def test_the_network_policy_admits_only_the_webhook_and_api_ports() -> None:
    default = find(manifests([str(EXAMPLES)], "q", Options(IMAGE)), "NetworkPolicy")
    assert default["spec"]["policyTypes"] == ["Ingress"]
    assert default["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "quotalang",
                                                              "app.kubernetes.io/component": "webhook"}}
    assert default["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 8443}]},
                                          {"ports": [{"protocol": "TCP", "port": 8444}]}]
    narrowed = find(manifests([str(EXAMPLES)], "q", Options(IMAGE, webhook_from=("10.0.0.0/24", "192.168.1.7"),
                                                            metrics_from_namespace="monitoring")), "NetworkPolicy")
    assert narrowed["spec"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8443}],
         "from": [{"ipBlock": {"cidr": "10.0.0.0/24"}}, {"ipBlock": {"cidr": "192.168.1.7/32"}}]},
        {"ports": [{"protocol": "TCP", "port": 8444}],  # the API port: metrics, /api, pages
         "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]},
    ]
    with pytest.raises(InputError, match="not a CIDR"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, webhook_from=("anywhere",)))
    # Before 1.21 any namespace could claim the name label: refused, not silently weak.
    with pytest.raises(InputError, match=r"from 1\.21"):
        manifests([str(EXAMPLES)], "q", Options(IMAGE, kube_version=(1, 20), metrics_from_namespace="monitoring"))


def test_output_dir_writes_one_file_per_object_and_a_kustomization(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    code, said = run("--policy", str(EXAMPLES), "--namespace", "q", "--output-dir", str(folder))
    assert code == 0 and "kubectl apply -k" in said
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    files = kustomization["resources"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*files, "kustomization.yaml", "policy"])
    docs = [yaml.safe_load((folder / name).read_text()) for name in files]
    printed = manifests([str(EXAMPLES)], "q", Options(IMAGE))
    # Every object a file, but the policy: its .quota files as they are, and a generator (no hash suffix).
    assert [d["kind"] for d in docs] == [d["kind"] for d in printed if d["metadata"]["name"] != "quotalang-policy"]
    sources = sorted(p.name for p in EXAMPLES.glob("*.quota"))
    assert kustomization["configMapGenerator"] == [{"name": "quotalang-policy", "namespace": "q",
                                                    "files": [f"policy/{n}" for n in sources]}]
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True
    for name in sources:
        assert (folder / "policy" / name).read_text() == (EXAMPLES / name).read_text()
    assert files[0] == "01-customresourcedefinition-quotaledgers.quotalang.dev.yaml"
    assert files[-1] == f"{len(files):02d}-validatingwebhookconfiguration-quotalang.yaml"
    # A second run replaces its own output (a dropped object leaves no file behind) ...
    code, _ = run("--policy", str(EXAMPLES), "--namespace", "q", "--output-dir", str(folder), "--kube-version",
                  "1.20")
    assert code == 0
    again = yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([*again, "kustomization.yaml", "policy"])
    # ... but never mixes with files it did not write, in policy/ neither.
    (folder / "policy" / "extra.quota").write_text("group x {}\n")
    assert run("--policy", str(EXAMPLES), "--namespace", "q", "--output-dir", str(folder))[0] == 2
    (folder / "policy" / "extra.quota").unlink()
    (folder / "mine.yaml").write_text("keep: me\n")
    assert run("--policy", str(EXAMPLES), "--namespace", "q", "--output-dir", str(folder))[0] == 2
    assert (folder / "mine.yaml").read_text() == "keep: me\n"
    assert run("--policy", str(EXAMPLES), "--namespace", "q", "--output-dir", str(folder / "mine.yaml"))[0] == 2


def test_output_dir_keeps_an_embedded_key_private(tmp_path: Path) -> None:
    code, _ = run("--policy", str(EXAMPLES), "--namespace", "q", "--embed-self-signed", "--output-dir",
                  str(tmp_path / "out"))
    assert code == 0
    secret = next((tmp_path / "out").glob("*-secret-quotalang-tls.yaml"))
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "WARNING: this output holds a private key" in (tmp_path / "out" / "kustomization.yaml").read_text()


@pytest.fixture
def ca_file(tmp_path: Path) -> tuple[Path, bytes]:
    ca = make_ca()
    (tmp_path / "ca.crt").write_bytes(ca.cert)
    return tmp_path / "ca.crt", ca.cert


def fleet_part(ca: Path, only: str, *more: str) -> list[dict[str, Any]]:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--tls-secret", "hub-tls", "--ca-bundle",
                     str(ca), "--cluster", "east", "--cluster", "west", "--webhook-url",
                     "https://quota.example.com:8443/", "--only", only, *more)
    assert code == 0, text
    return [d for d in yaml.safe_load_all(text) if d]


def test_a_member_gets_a_webhook_calling_its_route_and_the_watch_and_reclaim_rbac(ca_file: tuple[Path, bytes]) -> None:
    docs = fleet_part(ca_file[0], "west")
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                         "Secret", "ValidatingWebhookConfiguration"]
    (hook,) = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert hook["clientConfig"] == {"url": "https://quota.example.com:8443/validate/west",
                                    "caBundle": base64.b64encode(ca_file[1]).decode()}
    # The same rules and exemptions as a one-cluster install's webhook.
    single = find(manifests([str(EXAMPLES)], "q", Options(IMAGE)), "ValidatingWebhookConfiguration")["webhooks"][0]
    assert hook["rules"] == single["rules"] and hook["namespaceSelector"] == single["namespaceSelector"]
    role = find(docs, "ClusterRole")
    assert role["metadata"]["name"] == "quotalang-watcher"
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch", "get", "patch", "create"}  # written: only what reclaim writes
    # Reclaim (issue 29): the example policy's suspendable kinds are patched where their borrowers run, and
    # each reclaim is an Event there; nothing deleted without `reclaim by delete`.
    writes = [r for r in role["rules"] if {"patch", "create"} & set(r["verbs"])]
    assert writes == [
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]},
        {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["get", "patch"]},
        {"apiGroups": ["kubeflow.org"], "resources": ["mpijobs", "pytorchjobs", "tfjobs"], "verbs": ["get", "patch"]},
        {"apiGroups": ["ray.io"], "resources": ["rayjobs"], "verbs": ["get", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    single_role = next(d for d in manifests([str(EXAMPLES)], "q", Options(IMAGE))
                       if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "quotalang")
    assert all(rule in single_role["rules"] for rule in writes)  # the one-cluster install's, rule for rule
    pods = next(r for r in role["rules"] if r["apiGroups"] == [""] and "list" in r["verbs"])
    assert pods["resources"] == ["limitranges", "pods"]
    binding = find(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == "quotalang-watcher"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "quotalang", "namespace": "q"}]
    token = find(docs, "Secret")
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": "quotalang"}


def test_the_hub_runs_serve_over_every_member_kubeconfig_and_has_no_webhook(ca_file: tuple[Path, bytes]) -> None:
    docs = fleet_part(ca_file[0], "hub")
    kinds = [d["kind"] for d in docs]
    assert "ValidatingWebhookConfiguration" not in kinds and "Deployment" in kinds
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--cluster"]
    assert pairs == ["east=/etc/quotalang/clusters/east/kubeconfig", "west=/etc/quotalang/clusters/west/kubeconfig"]
    assert args[args.index("--ledger-cluster") + 1] == "hub=in-cluster"
    assert args[args.index("--store") + 1] == "kubernetes" and "--in-cluster" not in args
    for name in ("east", "west"):
        assert {"name": f"cluster-{name}", "secret": {"secretName": f"quotalang-cluster-{name}"}} in pod["volumes"]
        assert {"name": f"cluster-{name}", "mountPath": f"/etc/quotalang/clusters/{name}", "readOnly": True} in \
            pod["containers"][0]["volumeMounts"]
    # The hub watches nothing (each member's LimitRanges are read there): the ledger, the Lease, token checks.
    role = next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "quotalang")
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    assert groups == {"quotalang.dev", "apiextensions.k8s.io", "authentication.k8s.io", "authorization.k8s.io"}


def test_an_embedded_certificate_names_the_hub_url_and_members_trust_its_ca(tmp_path: Path) -> None:
    code, said = run("--policy", str(EXAMPLES), "--namespace", "q", "--embed-self-signed", "--cluster", "east",
                     "--webhook-url", "https://quota.example.com", "--output-dir", str(tmp_path / "out"))
    assert code == 0 and "a folder per cluster" in said
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["east", "hub"]
    secret = yaml.safe_load(next((tmp_path / "out" / "hub").glob("*-secret-quotalang-tls.yaml")).read_text())
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "quota.example.com" in names.get_values_for_type(x509.DNSName)
    hook = yaml.safe_load(next((tmp_path / "out" / "east").glob("*-validatingwebhookconfiguration-*")).read_text())
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["webhooks"][0]["clientConfig"]["caBundle"]))
    assert cert.issuer == ca.subject
    kustomization = (tmp_path / "out" / "east" / "kustomization.yaml").read_text()
    assert "kubectl -n q create secret generic quotalang-cluster-east --from-file=kubeconfig=FILE" in kustomization


def test_before_1_21_a_member_guards_the_exemption_label_through_the_hub(ca_file: tuple[Path, bytes]) -> None:
    docs = fleet_part(ca_file[0], "east", "--kube-version", "1.20")
    hooks = find(docs, "ValidatingWebhookConfiguration")["webhooks"]
    assert [h["clientConfig"]["url"] for h in hooks] == ["https://quota.example.com:8443/validate/east",
                                                         "https://quota.example.com:8443/validate-namespaces"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "a"], "--cluster and --webhook-url go together"),
        (["--webhook-url", "https://h"], "--cluster and --webhook-url go together"),
        (["--only", "hub"], "--only picks one part of a --cluster install"),
        (["--cluster", "a", "--webhook-url", "https://h", "--embed-self-signed"], "give --output-dir DIR"),
        (["--cluster", "a", "--webhook-url", "https://h", "--embed-self-signed", "--only", "b"],
         "--only b: give hub or one of the --cluster names (a)"),
        (["--cluster", "a", "--webhook-url", "http://h", "--embed-self-signed", "--only", "a"],
         "is not an https URL"),
        (["--cluster", "a", "--webhook-url", "https://h", "--only", "a"], "the members' webhook configurations "
         "need the hub's CA now"),
        (["--cluster", "a", "--webhook-url", "https://h", "--cert-manager", "--only", "a"], "need the hub's CA now"),
        (["--cluster", "A", "--webhook-url", "https://h", "--embed-self-signed", "--only", "hub"],
         "--cluster: 'A' is not a cluster name"),
        (["--cluster", "a", "--cluster", "a", "--webhook-url", "https://h", "--embed-self-signed", "--only", "a"],
         "each member cluster is named once"),
        (["--cluster", "hub", "--webhook-url", "https://h", "--embed-self-signed", "--only", "hub"],
         "the hub is named hub"),
    ],
    ids=["no-url", "no-cluster", "only-alone", "neither-dir-nor-only", "only-unknown", "not-https", "secret-mode",
         "cert-manager", "bad-name", "twice", "named-hub"],
)
def test_cluster_manifest_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert run("--policy", str(EXAMPLES), "--namespace", "q", *args)[0] == 2
    assert message in capsys.readouterr().err


def test_the_header_warns_what_an_outage_blocks_under_fail_only() -> None:
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--exempt-namespace", "monitoring")
    assert code == 0
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "# WARNING: failurePolicy Fail." in header[2]
    assert "outside the exempt namespaces (kube-system, monitoring, q)" in header[3]
    assert any("--exempt-namespace cert-manager --exempt-namespace gpu-operator" in line for line in header)
    code, text = run("--policy", str(EXAMPLES), "--namespace", "q", "--failure-policy", "Ignore")
    assert code == 0 and "WARNING: failurePolicy" not in text


def test_the_api_port_answers_its_service_s_names_and_nothing_else(docs: list[dict[str, Any]]) -> None:
    """In the cluster the pages are reached by the Service's DNS name: without it every page is a 421."""
    from quotalang.server.http import host_allowed

    args = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    named = frozenset(value for flag, value in itertools.pairwise(args) if flag == "--api-hostname")
    assert named == {"quotalang.quota-system.svc", "quotalang.quota-system.svc.cluster.local",
                     "quotalang.quota-system", "quotalang"}
    assert host_allowed("quotalang.quota-system.svc:8444", named)
    assert not host_allowed("quotalang.other-namespace.svc:8444", named)
    assert not host_allowed("attacker.example:8444", named)
