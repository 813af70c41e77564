"""What a decision tells a ledger store to record: the stored object, the reservation, whether to record at all."""

from __future__ import annotations

from typing import Any, get_args

import pytest

from quotalang.compiler import compile_sources
from quotalang.decision import REASONS, Decision, Reason
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.units import NANO

POLICY = """\
import "quotalang:policies/core.quota"

settings {
  group label "g"
}

group root {
  requests.cpu 100
}

group a in root {
  requests.cpu 10
}

group b in root {
  requests.cpu 10
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def deployment(group: str | None, replicas: int = 1, cpu: str = "1") -> dict[str, Any]:
    labels = {} if group is None else {"g": group}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "labels": labels, "resourceVersion": "7"},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}},
        },
    }


def scale(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": replicas}}


def hpa(max_replicas: int) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"maxReplicas": max_replicas, "scaleTargetRef": {"kind": "Deployment", "name": "web"}}}


def test_a_create_stores_the_object_and_reserves_its_usage(policy: CompiledPolicy) -> None:
    obj = deployment("a", replicas=2)
    d = evaluate(policy, obj)
    assert d.reserves and d.stored is obj
    assert d.reservation == {"a": {"requests.cpu": 2 * NANO, "cpu": 2 * NANO, "pods": 2 * NANO,
                                   "count/pods": 2 * NANO}}
    assert d.stored_usage == d.total


def test_a_shrink_reserves_nothing_but_is_still_recorded(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("a", replicas=1), "UPDATE", old=deployment("a", replicas=3))
    assert d.reserves and d.reservation == {}
    assert d.charges["a"]["requests.cpu"] == -2 * NANO  # the signed change stays in charges


def test_a_label_move_reserves_the_new_group_only(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("b", replicas=2), "UPDATE", old=deployment("a", replicas=2))
    assert d.charges["a"]["requests.cpu"] == -2 * NANO
    assert set(d.reservation) == {"b"}


def test_a_scale_stores_the_parent_with_the_new_replicas(policy: CompiledPolicy) -> None:
    parent = deployment("a", replicas=2)
    d = evaluate(policy, scale(5), "UPDATE", parent=parent)
    assert d.allowed and d.reserves
    assert d.stored is not None and d.stored["spec"]["replicas"] == 5
    assert d.stored["metadata"] == parent["metadata"] and parent["spec"]["replicas"] == 2  # a copy
    assert d.reservation["a"]["requests.cpu"] == 3 * NANO
    assert d.stored_usage["requests.cpu"] == 5 * NANO


def test_a_scale_to_no_replicas_is_stored_too(policy: CompiledPolicy) -> None:
    d = evaluate(policy, {**scale(0), "spec": {}}, "UPDATE", parent=deployment("a", replicas=2))
    assert d.reserves and d.stored is not None and d.stored["spec"]["replicas"] == 0


def test_a_scale_whose_parent_is_missing_stores_nothing(policy: CompiledPolicy) -> None:
    d = evaluate(policy, scale(5), "UPDATE")
    assert not d.allowed and d.reason == "scale-parent-missing"
    assert d.stored is None and not d.reserves and d.reservation == {}


def test_an_hpa_is_checked_and_never_recorded(policy: CompiledPolicy) -> None:
    d = evaluate(policy, hpa(5), parent=deployment("a"))
    assert d.allowed and d.reason == "charged"
    assert d.stored is None and not d.reserves and d.reservation == {} and d.charges == {}
    too_big = evaluate(policy, hpa(50), parent=deployment("a"))
    assert not too_big.allowed and too_big.reason == "over-quota" and not too_big.reserves


def test_a_dry_run_is_decided_alike_and_reserves_nothing(policy: CompiledPolicy) -> None:
    wet = evaluate(policy, deployment("a", replicas=2))
    dry = evaluate(policy, deployment("a", replicas=2), dry_run=True)
    assert dry.dry_run and (dry.allowed, dry.charges, dry.message) == (wet.allowed, wet.charges, wet.message)
    assert not dry.reserves and dry.reservation == {}
    assert dry.as_json() == wet.as_json()


def test_a_denial_reserves_nothing(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("a", replicas=11))
    assert not d.allowed and d.reason == "over-quota"
    assert not d.reserves and d.reservation == {} and d.charges == {}


def test_unlabelled_and_unruled_objects_are_recorded_uncharged(policy: CompiledPolicy) -> None:
    unlabelled = evaluate(policy, deployment(None))
    assert unlabelled.reason == "unlabelled" and unlabelled.reserves
    assert unlabelled.stored_usage == {} and unlabelled.reservation == {}
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"g": "a"}}}
    no_rule = evaluate(policy, config)
    assert no_rule.reason == "no-rule" and no_rule.stored is config and no_rule.stored_usage == {}


def test_operations_not_intercepted_store_nothing(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("a"), "DELETE")
    assert d.reason == "not-intercepted" and d.stored is None and not d.reserves


def test_an_unknown_group_is_told_from_the_label_not_the_message() -> None:
    # The group label itself says "unknown": an unlabelled workload is still "unlabelled".
    text = POLICY.replace('group label "g"', 'group label "unknown.io/g"\n  unlabelled deny')
    policy = compile_sources(load_text(text, "p.quota"))
    d = evaluate(policy, deployment(None))
    assert not d.allowed and d.reason == "unlabelled"
    obj = deployment(None)
    obj["metadata"]["labels"] = {"unknown.io/g": "nope"}
    assert evaluate(policy, obj).reason == "unknown-group"


def test_reasons_are_a_closed_set() -> None:
    assert set(REASONS) == set(get_args(Reason))
    assert {"charged", "over-quota", "must-specify", "no-rule", "owned", "unlabelled", "unknown-group",
            "not-intercepted", "scale-parent-missing", "hpa-target-missing", "not-bound", "outside-quota",
            "unbound-namespace", "model-not-pinned", "unknown-model", "model-conflict",
            "not-authorized"} == set(REASONS)


def test_a_decision_is_not_changed_after_it_is_built(policy: CompiledPolicy) -> None:
    # warn mode rewrites warnings before the Decision exists: build twice, get the same
    d1 = evaluate(policy, scale(3), "UPDATE", parent=deployment("a"))
    d2 = evaluate(policy, scale(3), "UPDATE", parent=deployment("a"))
    assert d1 == d2 and d1.notes[-1] == "scale of Deployment ns/web to 3 replicas"
    assert isinstance(d1, Decision)
