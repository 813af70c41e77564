"""`quotalang manifests`: everything needed to run the webhook in a cluster, as YAML.

The output applies as is (`quotalang manifests ... | kubectl apply -f -`):
Namespace, ServiceAccount, least-privilege RBAC, the policy as a ConfigMap,
the serving TLS Secret, Service, Deployment, PodDisruptionBudget and the
ValidatingWebhookConfiguration.

Decisions:

* RBAC: a ClusterRole that may only get/list/watch the kinds the policy has
  rules for, plus pods (the controller accrues cash per pod), and read and
  write its own `QuotaLedger` objects (the shared ledger of `--store
  kubernetes`; delete removes a dropped group's ledger once it is empty);
  leases (leader election) are granted by a Role in the webhook's own
  namespace only, which is narrower than a cluster-wide grant.
* The `QuotaLedger` CRD comes first, so that everything after it applies in
  one go.
* TLS: by default a CA and a serving certificate for the Service's DNS names
  are generated on the spot; the Secret holds the serving pair and the webhook
  configuration's `caBundle` the CA (the CA key is not printed or kept). With
  `--tls-secret NAME --ca-bundle FILE` an existing Secret (cert-manager's, say)
  is mounted instead and nothing secret is printed.
* The webhook registers CREATE and UPDATE of every kind in the policy, the
  `/scale` subresource of kinds whose rule names a scale path (others are
  not charged on scale anyway), and HorizontalPodAutoscalers; DELETE is not
  intercepted. kube-system and the webhook's own namespace are excluded by the
  `kubernetes.io/metadata.name` label (set by Kubernetes ≥ 1.21; on older
  clusters label those namespaces yourself), and any namespace labelled
  `quotalang.dev/ignore` is skipped too.
* The ConfigMap holds the policy directory's `*.quota` files flat; the shipped
  kind library (`quotalang:policies`) is in the image. A policy that imports a
  file from outside its directory cannot be put in one ConfigMap: an error.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from quotalang import loader
from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube.naming import plural, policy_kinds
from quotalang.controller.ledger import crd as ledger_crd
from quotalang.errors import InputError

DEFAULT_IMAGE = "ghcr.io/quotalang/quotalang:0.1.0"
NAME = "quotalang"
WEBHOOK_NAME = "quota.quotalang.dev"
POLICY_MOUNT = "/etc/quotalang/policy"
TLS_MOUNT = "/etc/quotalang/tls"
PORT = 8443
CONFIGMAP_LIMIT = 1024 * 1024  # the apiserver refuses larger ConfigMaps
FailurePolicy = Literal["Fail", "Ignore"]


def _labels() -> dict[str, str]:
    return {"app.kubernetes.io/name": NAME, "app.kubernetes.io/component": "webhook"}


def _meta(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = _labels()
    return meta


def policy_files(paths: Sequence[str]) -> tuple[CompiledPolicy, dict[str, str]]:
    """Compile the policy and collect its files for a flat ConfigMap (file name → text)."""
    sources = loader.load(list(paths))
    policy = compile_sources(sources)
    library = os.path.abspath(loader.library_dir())
    own: dict[str, str] = {}  # abspath -> flat key
    for root in paths:
        path = Path(root)
        found = sorted(p for p in path.iterdir() if p.suffix == ".quota") if path.is_dir() else [path]
        for file in found:
            if file.name in own.values():
                raise InputError(f"two policy files are named {file.name}: a ConfigMap holds one flat folder")
            own[os.path.abspath(file)] = file.name
    files: dict[str, str] = {}
    for name, text in sources.texts.items():
        absolute = os.path.abspath(name)
        if absolute.startswith(library + os.sep):
            continue  # the shipped kind rules: part of the image
        if absolute not in own:
            raise InputError(
                f"the policy imports {name}, which is outside the policy directory; "
                "move it into the directory so the ConfigMap can hold it"
            )
        files[own[absolute]] = text
    size = sum(len(k) + len(v.encode()) for k, v in files.items())
    if size > CONFIGMAP_LIMIT:
        raise InputError(f"the policy files hold {size} bytes, over a ConfigMap's limit of {CONFIGMAP_LIMIT}")
    return policy, dict(sorted(files.items()))


def rbac(policy: CompiledPolicy, namespace: str) -> list[dict[str, Any]]:
    by_group: dict[str, set[str]] = {"": {"pods"}}
    for group, _version, kind, _scales in policy_kinds(policy):
        by_group.setdefault(group, set()).add(plural(kind))
    rules = [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": ["get", "list", "watch"]}
        for group, resources in sorted(by_group.items())
    ]
    rules.append({"apiGroups": [ledger_crd.GROUP], "resources": [ledger_crd.PLURAL],
                  "verbs": ["get", "list", "watch", "create", "update", "delete"]})
    subject = [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(NAME, namespace),
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "list", "watch", "create", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(NAME, namespace),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME},
         "subjects": subject},
    ]


def webhook_rules(policy: CompiledPolicy) -> list[dict[str, Any]]:
    by_gv: dict[tuple[str, str], list[str]] = {}
    for group, version, kind, scales in policy_kinds(policy):
        resources = by_gv.setdefault((group, version), [])
        resources.append(plural(kind))
        if scales:
            resources.append(f"{plural(kind)}/scale")
    rules = [
        {"apiGroups": [group], "apiVersions": [version], "operations": ["CREATE", "UPDATE"],
         "resources": sorted(resources), "scope": "Namespaced"}
        for (group, version), resources in sorted(by_gv.items())
    ]
    rules.append({"apiGroups": ["autoscaling"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                  "resources": ["horizontalpodautoscalers"], "scope": "Namespaced"})
    return rules


def deployment(
    namespace: str, image: str, replicas: int, tls_secret: str, failure_mode: str
) -> dict[str, Any]:
    args = [
        "serve", "--policy", POLICY_MOUNT, "--host", "0.0.0.0", "--port", str(PORT),
        "--tls-cert", f"{TLS_MOUNT}/tls.crt", "--tls-key", f"{TLS_MOUNT}/tls.key",
        "--failure-mode", failure_mode, "--log-format", "json",
        # Replicas share the ledger on the apiserver; the Lease holder watches and accrues cash.
        "--in-cluster", "--store", "kubernetes",
    ]
    probe = {"scheme": "HTTPS", "port": "https"}
    container = {
        "name": "webhook",
        "image": image,
        "args": args,
        "ports": [{"name": "https", "containerPort": PORT}],
        # The kubernetes store names each replica (reservations, the Lease holder) and finds the
        # Lease's namespace from these.
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe}, "initialDelaySeconds": 5,
                          "periodSeconds": 10, "failureThreshold": 3},
        # No CPU limit: throttling would show up as admission latency at the apiserver.
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [
            {"name": "policy", "mountPath": POLICY_MOUNT, "readOnly": True},
            {"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},  # certificate reloads validate in a scratch folder
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(NAME, namespace),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _labels()},
            "template": {
                "metadata": {"labels": _labels()},
                "spec": {
                    "serviceAccountName": NAME,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": _labels()},
                                                            "topologyKey": "kubernetes.io/hostname"}}]}},
                    "containers": [container],
                    "volumes": [
                        {"name": "policy", "configMap": {"name": f"{NAME}-policy"}},
                        {"name": "tls", "secret": {"secretName": tls_secret}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }


def manifests(
    paths: Sequence[str],
    namespace: str,
    *,
    image: str = DEFAULT_IMAGE,
    failure_policy: FailurePolicy = "Fail",
    replicas: int = 2,
    tls_secret: str | None = None,
    ca_bundle: bytes | None = None,
) -> list[dict[str, Any]]:
    """Every object, in apply order (the webhook configuration last)."""
    if (tls_secret is None) != (ca_bundle is None):
        raise InputError(
            "--tls-secret and --ca-bundle go together: the Secret to mount and the CA that signed it"
        )
    policy, files = policy_files(paths)
    service = f"{NAME}.{namespace}.svc"
    docs: list[dict[str, Any]] = [
        ledger_crd.crd(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        *rbac(policy, namespace),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{NAME}-policy", namespace),
         "data": files},
    ]
    if tls_secret is None:
        from quotalang.server.tls import issue, make_ca

        ca = make_ca(f"quotalang webhook CA ({namespace})")
        pair = issue(ca, [service, f"{service}.cluster.local", f"{NAME}.{namespace}", NAME])
        tls_secret, ca_bundle = f"{NAME}-tls", ca.cert
        docs.append({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": _meta(tls_secret, namespace),
            "data": {"tls.crt": base64.b64encode(pair.cert).decode(),
                     "tls.key": base64.b64encode(pair.key).decode()},
        })
    assert ca_bundle is not None
    failure_mode = "deny" if failure_policy == "Fail" else "allow"
    docs += [
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, namespace),
         "spec": {"selector": _labels(), "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}},
        deployment(namespace, image, replicas, tls_secret, failure_mode),
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(NAME, namespace),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": _labels()}}},
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": _meta(NAME),
            "webhooks": [{
                "name": WEBHOOK_NAME,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "timeoutSeconds": 5,
                "failurePolicy": failure_policy,
                "matchPolicy": "Equivalent",
                "clientConfig": {
                    "service": {"namespace": namespace, "name": NAME, "path": "/validate", "port": 443},
                    "caBundle": base64.b64encode(ca_bundle).decode(),
                },
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                     "values": sorted({"kube-system", namespace})},
                    {"key": "quotalang.dev/ignore", "operator": "DoesNotExist"},
                ]},
                "rules": webhook_rules(policy),
            }],
        },
    ]
    return docs


def render_yaml(docs: list[dict[str, Any]], namespace: str, replicas: int) -> str:
    header = [
        f"# quotalang webhook for namespace {namespace}: generated by `quotalang manifests`.",
        "# Apply with: quotalang manifests ... | kubectl apply -f -",
    ]
    if replicas > 1:
        header.append(
            f"# Note: {replicas} replicas each keep their own in-memory ledger until the kubernetes "
            "ledger store lands; use --replicas 1 for exact quota meanwhile."
        )
    body = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, width=120)
    return "\n".join(header) + "\n" + body
