"""The objects that register the aggregated API (`server/aggregated.py`) with a cluster, and who may read it.

Kept apart from `manifests.py` (the install's other objects): `with_aggregated_api`
adds these to an install's documents.

* an `APIService` `v1alpha1.visibility.quotalang.dev` pointing at the
  install's Service, port `aggregated` (the pod's `--aggregated-port`), with
  the webhook's CA (`caBundle`, or cert-manager's `inject-ca-from`: its
  cainjector fills APIServices too);
* the ClusterRole `quotalang-quotagroup-viewer`: `get`/`list` quotagroups
  (`kubectl get`/`describe`), and `get`/`create` on `pages` and its sections
  (the pages through `kubectl proxy`; `create` is the what-if and propose
  forms, which reserve nothing). Bound by admins, to teams or to `system:authenticated`
  (nothing is bound here): one grant reads the whole tree, as on the API port;
* `chargeablegroups` (namespaced) `list`: bound in a team's namespace by a
  RoleBinding, the viewer role shows that namespace which groups it may
  charge, and not the tree (a RoleBinding grants no cluster-scoped resource);
* serve's own identity reads the front proxy's CA: a RoleBinding in
  kube-system of the built-in `extension-apiserver-authentication-reader`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from quotalang.server.aggregated import API_SERVICE, CHARGEABLE, GROUP, PAGE_SECTIONS, PAGES, RESOURCE, VERSION

VIEWER = "quotalang-quotagroup-viewer"
AGGREGATED_PORT = 8445
PORT_NAME = "aggregated"
READER_ROLE = "extension-apiserver-authentication-reader"  # built in, in kube-system
RBAC = "rbac.authorization.k8s.io/v1"


def viewer_rules() -> list[dict[str, Any]]:
    return [
        {"apiGroups": [GROUP], "resources": [RESOURCE], "verbs": ["get", "list"]},
        {"apiGroups": [GROUP], "resources": [CHARGEABLE], "verbs": ["list"]},
        {"apiGroups": [GROUP], "resources": [PAGES, *(f"{PAGES}/{s}" for s in PAGE_SECTIONS)],
         "verbs": ["get", "create"]},
    ]


def viewer_role(labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": VIEWER, "labels": dict(labels)},
            "rules": viewer_rules()}


def api_service(namespace: str, service: str, *, ca_bundle: str | None, annotations: dict[str, str],
                labels: dict[str, str], port: int = AGGREGATED_PORT) -> dict[str, Any]:
    spec: dict[str, Any] = {"group": GROUP, "version": VERSION,
                            "service": {"namespace": namespace, "name": service, "port": port},
                            "groupPriorityMinimum": 1000, "versionPriority": 15}
    if ca_bundle:
        spec["caBundle"] = ca_bundle
    meta: dict[str, Any] = {"name": API_SERVICE, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": meta, "spec": spec}


def reader_binding(namespace: str, account: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": RBAC, "kind": "RoleBinding",
            "metadata": {"name": f"{account}-{READER_ROLE}", "namespace": "kube-system", "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": READER_ROLE},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]}


def ca_publisher(namespace: str, account: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """serve may write the APIService's caBundle (`--cert-secret`: its own CA, as for the webhook), that one only."""
    role = f"{account}-apiservice"
    return [
        {"apiVersion": RBAC, "kind": "ClusterRole", "metadata": {"name": role, "labels": dict(labels)},
         "rules": [{"apiGroups": ["apiregistration.k8s.io"], "resources": ["apiservices"],
                    "resourceNames": [API_SERVICE], "verbs": ["get", "update"]}]},
        {"apiVersion": RBAC, "kind": "ClusterRoleBinding", "metadata": {"name": role, "labels": dict(labels)},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
         "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]},
    ]


def with_aggregated_api(docs: Sequence[dict[str, Any]], namespace: str, name: str) -> list[dict[str, Any]]:
    """`docs` (an install: its Service, Deployment, NetworkPolicy and webhook configuration named `name`) serving
    the aggregated API too: the pods' port and flag, the Service's port, ingress to it from where the webhook's
    calls come from, the APIService (before the webhook configuration, which stays last) and the RBAC above.

    The APIService takes the webhook's CA: its `caBundle` (`--tls-secret`, `--embed-self-signed`) or
    cert-manager's `inject-ca-from`; with the default Secret-kept CA serve writes it, as it writes the
    webhook's (`certs.py`), and may update that one APIService only.
    """
    out = [copy.deepcopy(d) for d in docs]
    labels: dict[str, str] = {}
    ca_bundle: str | None = None
    annotations: dict[str, str] = {}
    for doc in out:
        kind, meta = doc.get("kind"), doc.get("metadata", {})
        if kind == "Service" and meta.get("name") == name:
            doc["spec"]["ports"].append({"name": PORT_NAME, "port": AGGREGATED_PORT, "targetPort": PORT_NAME})
            labels = dict(meta.get("labels", {}))
        elif kind == "Deployment" and meta.get("name") == name:
            container = doc["spec"]["template"]["spec"]["containers"][0]
            container.setdefault("args", []).append(f"--aggregated-port={AGGREGATED_PORT}")
            container.setdefault("ports", []).append({"name": PORT_NAME, "containerPort": AGGREGATED_PORT})
        elif kind == "NetworkPolicy" and meta.get("name") == name:
            # From where the webhook port is reached: both are the control plane's calls.
            first = doc["spec"]["ingress"][0]
            doc["spec"]["ingress"].append({**copy.deepcopy(first),
                                           "ports": [{"protocol": "TCP", "port": AGGREGATED_PORT}]})
        elif kind == "ValidatingWebhookConfiguration":
            ca_bundle = doc["webhooks"][0]["clientConfig"].get("caBundle")
            annotations = {k: v for k, v in meta.get("annotations", {}).items() if k.startswith("cert-manager.io/")}
    added = [api_service(namespace, name, ca_bundle=ca_bundle, annotations=annotations, labels=labels),
             viewer_role(labels), reader_binding(namespace, name, labels)]
    if ca_bundle is None and not annotations:  # serve keeps its own CA (--cert-secret) and publishes it
        added += ca_publisher(namespace, name, labels)
    last = out[-1:] if out and out[-1].get("kind") == "ValidatingWebhookConfiguration" else []
    return out[: len(out) - len(last)] + added + last


__all__ = ["AGGREGATED_PORT", "VIEWER", "api_service", "reader_binding", "viewer_role", "viewer_rules",
           "with_aggregated_api"]
