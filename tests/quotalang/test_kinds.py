"""Kind rules: parts, each, expressions, defaults, scale and surge."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.errors import InputError
from quotalang.kinds import CompiledKind, compile_kind, surge_pods
from quotalang.parser import parse


def rule(text: str) -> CompiledKind:
    return compile_kind(parse(text, "k.quota").kinds[0])


DEPLOYMENT = rule("""
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 25%
}
""")

TFJOB = rule("""
kind kubeflow.org/v1 TFJob {
  pods each spec.tfReplicaSpecs.* {
    replicas .replicas default 1
    template .template
  }
}
""")

LWS = rule("""
kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {
  pods "leader" {
    replicas spec.replicas default 1
    template spec.leaderWorkerTemplate.leaderTemplate or spec.leaderWorkerTemplate.workerTemplate
  }
  pods "workers" {
    replicas spec.replicas default 1 * (spec.leaderWorkerTemplate.size default 1 - 1)
    template spec.leaderWorkerTemplate.workerTemplate
  }
}
""")

T: dict[str, Any] = {"spec": {"containers": [{"name": "c"}]}}


def test_single_part_with_default_replicas() -> None:
    (part,) = DEPLOYMENT.pods_of({"spec": {"template": T}})
    assert (part.name, part.replicas, part.template) == ("pod", 1, T)
    # 25% of 1 replica rounds up to 1 surge pod, like Kubernetes' maxSurge.
    assert part.surge == 1


def test_each_over_a_map_names_parts_by_key() -> None:
    obj = {"spec": {"tfReplicaSpecs": {"Chief": {"template": T}, "Worker": {"replicas": 4, "template": T}}}}
    parts = TFJOB.pods_of(obj)
    assert [(p.name, p.replicas) for p in parts] == [("Chief", 1), ("Worker", 4)]


def test_each_over_a_list_names_parts_by_name_or_index() -> None:
    ray = rule("""
kind ray.io/v1 RayCluster {
  pods each spec.workerGroupSpecs.* {
    replicas .replicas default 1
    template .template
  }
}
""")
    obj = {"spec": {"workerGroupSpecs": [{"groupName": "x", "name": "gpu", "replicas": 2, "template": T},
                                         {"replicas": 3, "template": T}]}}
    assert [(p.name, p.replicas) for p in ray.pods_of(obj)] == [("gpu", 2), ("1", 3)]


def test_expressions_and_fallback_templates() -> None:
    worker = {"spec": {"containers": [{"name": "w"}]}}
    obj = {"spec": {"replicas": 3, "leaderWorkerTemplate": {"size": 4, "workerTemplate": worker}}}
    leader, workers = LWS.pods_of(obj)
    # no leaderTemplate: the leader runs the worker template; 3 groups × (4 − 1) workers
    assert (leader.replicas, leader.template) == (3, worker)
    assert (workers.replicas, workers.template) == (9, worker)


def test_absent_path_without_default_counts_zero_and_negative_clamps() -> None:
    r = rule("kind v1 X {\n  pods {\n    replicas spec.n - 5\n    template spec.t\n  }\n}\n")
    (part,) = r.pods_of({"spec": {"n": 2, "t": T}})
    assert part.replicas == 0
    (part,) = r.pods_of({"spec": {"t": T}})
    assert part.replicas == 0


def test_missing_template_is_reported_as_none() -> None:
    (part,) = DEPLOYMENT.pods_of({"spec": {"replicas": 2}})
    assert part.template is None and part.replicas == 2


def test_non_integer_replicas_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"spec\.replicas"):
        DEPLOYMENT.pods_of({"spec": {"replicas": "3", "template": T}})


@pytest.mark.parametrize(
    ("value", "replicas", "expected"),
    [(2, 10, 2), ("25%", 10, 3), ("25%", 4, 1), ("0%", 10, 0), ("100%", 3, 3), ("1", 5, 1), (True, 5, 0),
     ("x%", 5, 0), (-1, 5, 0)],
)
def test_surge_rounds_percent_up(value: object, replicas: int, expected: int) -> None:
    assert surge_pods(value, replicas) == expected


def test_with_replicas_copies_only_the_path() -> None:
    obj = {"metadata": {"name": "a"}, "spec": {"replicas": 1, "template": T}}
    scaled = DEPLOYMENT.with_replicas(obj, 5)
    assert scaled["spec"]["replicas"] == 5
    assert obj["spec"]["replicas"] == 1
    assert scaled["spec"]["template"] is T


def test_with_replicas_needs_a_scale_path() -> None:
    with pytest.raises(InputError, match="no scale path"):
        TFJOB.with_replicas({}, 3)


CLAMPED = rule("""
kind v1 K {
  pods each spec.groups.* {
    replicas clamp(.replicas default 0, .minReplicas default 0, .maxReplicas default 9) * .hosts default 1
    template .template
  }
  pods "pair" {
    replicas min(spec.a default 5, spec.b default 7, 6) + max(spec.c default 0, 1)
    template spec.template
  }
}
""")


@pytest.mark.parametrize(
    ("group", "pods"),
    [
        ({}, 0),  # clamp(0, 0, 9)
        ({"replicas": 4}, 4),
        ({"replicas": 12}, 9),  # over the upper bound
        ({"replicas": 1, "minReplicas": 3}, 3),  # under the lower bound
        ({"replicas": 5, "minReplicas": 8, "maxReplicas": 2}, 8),  # crossed: the lower bound, the larger
        ({"replicas": 2, "minReplicas": 1, "maxReplicas": 4, "hosts": 3}, 6),
    ],
)
def test_clamp_is_bounded_by_min_and_max(group: dict[str, int], pods: int) -> None:
    obj = {"spec": {"groups": [{"name": "g", "template": {"spec": {}}, **group}], "template": {"spec": {}}}}
    assert [(p.name, p.replicas) for p in CLAMPED.pods_of(obj)] == [("g", pods), ("pair", 6)]  # min(5, 7, 6) + 1


def test_min_and_max_read_paths_with_defaults() -> None:
    obj = {"spec": {"a": 2, "c": 4, "template": {"spec": {}}}}
    # min(2, 7, 6) + max(4, 1) = 2 + 4
    assert CLAMPED.pods_of(obj)[-1].replicas == 6


def test_creates_compiles_to_group_and_kind() -> None:
    compiled = rule("""
kind leaderworkerset.x-k8s.io/v1 LeaderWorkerSet {
  creates apps/v1 StatefulSet, v1 Pod
  creates apps/v1 StatefulSet via v1 Pod
  pods {
    template spec.template
  }
}
""")
    assert compiled.creates == {("apps", "StatefulSet"), ("", "Pod")}
    assert compiled.creates_via == {(("apps", "StatefulSet"), ("", "Pod"))}
