"""Render charts/quotalang offline with Helm's own library (PyPI's helm-python-sdk: no helm binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

CHART = Path(__file__).resolve().parents[1] / "charts" / "quotalang"
# Helm's install order (pkg/release/util/kind_sorter.go InstallOrder); other kinds (the webhook
# configuration, cert-manager's, the Prometheus Operator's) come after, as `helm install` applies them.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
    "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
    "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
    "IngressClass", "Ingress", "APIService",
]


def render(values: dict[str, Any], namespace: str, chart: Path = CHART) -> list[dict[str, Any]]:
    """The chart's objects for `values` (NOTES.txt left out) in the order `helm install` applies them."""
    with helm.Chart.load(str(chart)) as loaded:
        out = loaded.render(values, name="quotalang", namespace=namespace)
    docs = [doc for path, text in sorted(out.items()) if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]
    rank = {kind: i for i, kind in enumerate(INSTALL_ORDER)}
    return sorted(docs, key=lambda d: rank.get(d["kind"], len(rank)))


def render_text(values: dict[str, Any], namespace: str) -> str:
    return yaml.safe_dump_all(render(values, namespace), sort_keys=False)


def lint(values: dict[str, Any]) -> dict[str, Any]:
    # As against the oldest Kubernetes the values name (policy/v1beta1 is deprecated only from 1.21 on).
    report: dict[str, Any] = helm.lint(str(CHART), values, strict=True, kube_version=f"v{values['kubeVersion']}.0")
    return report
