"""Resource plurals, API groups and API paths, as Kubernetes spells them."""

from __future__ import annotations

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.controller.kube.naming import api_group, api_version_parts, collection_path, kind_of_resource, plural
from quotalang.loader import load_text

KINDS = """\
group root {
  requests.cpu 1
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}

kind kubeflow.org/v1 TFJob {
  pods each spec.tfReplicaSpecs.* {
    replicas .replicas default 1
    template .template
  }
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(KINDS, "naming.quota"))


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        ("Deployment", "deployments"),
        ("TFJob", "tfjobs"),
        ("LeaderWorkerSet", "leaderworkersets"),
        ("NetworkPolicy", "networkpolicies"),
        ("Ingress", "ingresses"),
        ("Endpoints", "endpoints"),
    ],
)
def test_plural(kind: str, resource: str) -> None:
    assert plural(kind) == resource


def test_api_groups() -> None:
    assert api_group("apps/v1") == "apps"
    assert api_group("v1") == ""
    assert api_version_parts("kubeflow.org/v2beta1") == ("kubeflow.org", "v2beta1")


def test_kind_of_resource_reads_the_policy(policy: CompiledPolicy) -> None:
    assert kind_of_resource(policy, "apps", "deployments") == "Deployment"
    assert kind_of_resource(policy, "kubeflow.org", "tfjobs") == "TFJob"
    assert kind_of_resource(policy, "apps", "statefulsets") is None
    assert kind_of_resource(policy, "", "deployments") is None


def test_collection_paths_cluster_wide_and_in_a_namespace() -> None:
    assert collection_path("v1", "Pod") == "/api/v1/pods"
    assert collection_path("ray.io/v1", "RayCluster") == "/apis/ray.io/v1/rayclusters"
    assert collection_path("apps/v1", "Deployment", "team-a") == "/apis/apps/v1/namespaces/team-a/deployments"
    assert collection_path("v1", "Pod", "ns") == "/api/v1/namespaces/ns/pods"
