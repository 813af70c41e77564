"""Resource plurals and API groups, as Kubernetes guesses them."""

from __future__ import annotations

import pytest

from controller.naming import api_group, api_version_parts, kind_of_resource, plural
from quotalang.compiler import CompiledPolicy


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
