"""Builders shared by the server tests: a small policy, workloads, AdmissionReviews.

The policy's numbers are chosen so every expectation can be checked by hand:
group `ml` may use 40 cpu, so ten 4-cpu pods fit and the eleventh does not.
"""

from __future__ import annotations

import itertools
from typing import Any

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.loader import load_text

POLICY = """\
settings {
  group label "team"
  model label gpu "team/gpu"
  unlabelled deny
  warn at 90%
}

group root {
  requests.cpu                   100
  requests.nvidia.com/gpu         16
  requests.nvidia.com/gpu.A100     8
  pods                           100
  cash requests.nvidia.com/gpu  1000h per week
}

group ml in root {
  requests.cpu                    40
  requests.nvidia.com/gpu          8
  requests.nvidia.com/gpu.A100     4
  pods                            40
  cash requests.nvidia.com/gpu   500h per week
}

group lab in root {
  mode warn
  requests.cpu                    10
  requests.nvidia.com/gpu          2
  requests.nvidia.com/gpu.A100     0
  pods                            10
  cash requests.nvidia.com/gpu   100h per week
}

group audited in root {
  mode audit
  requests.cpu                    10
  requests.nvidia.com/gpu          2
  requests.nvidia.com/gpu.A100     0
  pods                            10
  cash requests.nvidia.com/gpu   100h per week
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 25%
}

kind kubeflow.org/v1 TFJob {
  pods each spec.tfReplicaSpecs.* {
    replicas .replicas default 1
    template .template
  }
}
"""

_uids = itertools.count(1)


def compile_text(text: str = POLICY) -> CompiledPolicy:
    return compile_sources(load_text(text, "test.quota"))


def deployment(
    name: str = "web",
    group: str | None = "ml",
    replicas: int | str = 1,
    cpu: str = "4",
    gpu: int = 0,
    gpu_type: str | None = None,
    namespace: str = "team-a",
    image: str = "app:1",
) -> dict[str, Any]:
    labels: dict[str, str] = {}
    if group is not None:
        labels["team"] = group
    if gpu_type is not None:
        labels["team/gpu"] = gpu_type
    requests: dict[str, str] = {"cpu": cpu}
    if gpu:
        requests["nvidia.com/gpu"] = str(gpu)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "resources": {"requests": requests, "limits": dict(requests)},
                        }
                    ]
                },
            },
        },
    }


def hpa(name: str, target: str, max_replicas: int, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": max_replicas,
        },
    }


def _gvk(obj: dict[str, Any]) -> dict[str, str]:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    return {"group": group, "version": version, "kind": str(obj.get("kind", ""))}


def review(
    obj: dict[str, Any] | None,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    *,
    uid: str | None = None,
    dry_run: bool = False,
    sub_resource: str | None = None,
    kind: dict[str, str] | None = None,
    resource: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 as the apiserver sends it."""
    source = obj if obj is not None else (old or {})
    meta = source.get("metadata", {})
    gvk = kind or _gvk(source)
    request: dict[str, Any] = {
        "uid": uid or f"uid-{next(_uids)}",
        "kind": gvk,
        "resource": resource
        or {"group": gvk["group"], "version": gvk["version"], "resource": gvk["kind"].lower() + "s"},
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if sub_resource is not None:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def scale_review(
    name: str,
    replicas: int,
    old_replicas: int,
    *,
    namespace: str = "team-a",
    group: str = "apps",
    resource: str = "deployments",
    dry_run: bool = False,
) -> dict[str, Any]:
    """An UPDATE of `<resource>/scale`, as `kubectl scale` makes it."""

    def scale(n: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7"},
            "spec": {"replicas": n},
        }

    return review(
        scale(replicas),
        "UPDATE",
        scale(old_replicas),
        dry_run=dry_run,
        sub_resource="scale",
        kind={"group": "autoscaling", "version": "v1", "kind": "Scale"},
        resource={"group": group, "version": "v1", "resource": resource},
    )


def response_of(body: dict[str, Any]) -> dict[str, Any]:
    """The `response` of an AdmissionReview answer, after checking its envelope."""
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    response: dict[str, Any] = body["response"]
    return response
