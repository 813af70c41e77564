"""Decisions, with every expected number computed by hand in the comments."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from quotalang.compiler import compile_sources
from quotalang.errors import InputError
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.quantity import parse_quantity

# The shipped kind rules (Deployment, TFJob, ...), never a pasted copy of them.
POLICY = """\
import "quotalang:policies/core.quota"
import "quotalang:policies/kubeflow.quota"

settings {
  group label "g"
  model label cpu "g/cpu"
  model label gpu "g/gpu"
  warn at 90%
}

group root {
  requests.cpu                  100
  requests.nvidia.com/gpu        16
  requests.nvidia.com/gpu.A100    8
  cash requests.nvidia.com/gpu  1000h per week
}

group ai in root {
  requests.cpu                   60
  requests.nvidia.com/gpu        12
  requests.nvidia.com/gpu.A100    8
  cash requests.nvidia.com/gpu  600h per week
}

group lab in root {
  mode warn
  requests.cpu                   10
  requests.nvidia.com/gpu         2
  requests.nvidia.com/gpu.A100    0
  cash requests.nvidia.com/gpu  100h per week
}

group audited in lab {
  mode audit
  requests.cpu                   4
  requests.nvidia.com/gpu        1
  requests.nvidia.com/gpu.A100   0
  cash requests.nvidia.com/gpu  10h per week
}

"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def deployment(group: str | None, replicas: int = 1, cpu: str = "1", gpu: int = 0,
               gpu_type: str | None = None, image: str = "app:1") -> dict[str, Any]:
    labels = {} if group is None else {"g": group}
    if gpu_type:
        labels["g/gpu"] = gpu_type
    requests: dict[str, Any] = {"cpu": cpu}
    if gpu:
        requests["nvidia.com/gpu"] = gpu
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ns", "labels": labels},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "image": image,
                                                  "resources": {"requests": requests}}]}},
        },
    }


def q(text: str) -> int:
    return parse_quantity(text).nanos


def test_create_charges_replicas_times_pod_with_model_keys(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("ai", replicas=3, cpu="500m", gpu=2, gpu_type="A100"))
    assert d.allowed and d.group == "ai" and d.path == "root/ai"
    # 3 pods × 500m = 1500m cpu; 3 × 2 = 6 GPUs, charged to both the generic and the A100 key
    assert d.usage["requests.cpu"] == parse_quantity("1500m")
    assert d.usage["cpu"] == parse_quantity("1500m")
    assert d.usage["requests.nvidia.com/gpu"] == parse_quantity("6")
    assert d.usage["requests.nvidia.com/gpu.A100"] == parse_quantity("6")
    assert d.usage["pods"] == parse_quantity("3")
    assert d.charges == {"ai": d.total}


def test_model_key_denies_even_when_generic_fits(policy: CompiledPolicy) -> None:
    # ai: A100 hard 8, used 6; request 2 pods × 1 A100 = 2 → 8 ≤ 8 fits; 3 pods → 9 > 8
    usage = {"ai": {"requests.nvidia.com/gpu": "6", "requests.nvidia.com/gpu.A100": "6"}}
    assert evaluate(policy, deployment("ai", replicas=2, gpu=1, gpu_type="A100"), usage=usage).allowed
    d = evaluate(policy, deployment("ai", replicas=3, gpu=1, gpu_type="A100"), usage=usage)
    assert not d.allowed
    (v,) = d.violations
    assert (v.resource, v.requested, v.used, v.hard, v.free) == (
        "requests.nvidia.com/gpu.A100", q("3"), q("6"), q("8"), q("2"))
    assert d.message == (
        "quota exceeded in group root/ai: requests.nvidia.com/gpu.A100: "
        "requested 3 (3 × pod 1), used 6 of 8, 2 free"
    )
    assert d.charges == {}


def test_parent_own_workloads_use_hard_minus_carved(policy: CompiledPolicy) -> None:
    # root requests.cpu 100; children carve 60 + 10 = 70; root's own room is 30
    assert evaluate(policy, deployment("root", replicas=30, cpu="1")).allowed
    d = evaluate(policy, deployment("root", replicas=31, cpu="1"))
    assert not d.allowed
    assert "requests.cpu: requested 31 (31 × pod 1), used 70 of 100 (70 carved for children), 30 free" in d.message


def test_update_charges_only_the_delta(policy: CompiledPolicy) -> None:
    old = deployment("ai", replicas=3, cpu="2")
    new = deployment("ai", replicas=5, cpu="2")
    # ai requests.cpu 60, used 54 (incl. the old 6): +2 pods × 2 = +4 → 58 ≤ 60
    d = evaluate(policy, new, "UPDATE", old=old, usage={"ai": {"requests.cpu": "54"}})
    assert d.allowed
    assert d.delta["requests.cpu"] == q("4") and d.delta["pods"] == q("2")
    assert d.charges == {"ai": d.delta}
    d = evaluate(policy, new, "UPDATE", old=old, usage={"ai": {"requests.cpu": "57"}})
    assert not d.allowed
    assert "requested 4 (+4 to 5 × pod 2)" in d.message


def test_an_update_to_an_identical_object_reads_it_once_and_charges_nothing(
    policy: CompiledPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resent review (a same-uid CREATE is decided as an UPDATE against the record) is read once."""
    import quotalang.evaluator as evaluator

    def unused(*_: object, **__: object) -> None:
        raise AssertionError("the old object was read a second time")

    monkeypatch.setattr(evaluator, "workload_usage", unused)
    same = deployment("ai", replicas=3, cpu="2")
    # ai is over: used 61 of 60 requests.cpu; the same 3 × 2 cpu again is +0, allowed, nothing charged
    d = evaluate(policy, same, "UPDATE", old=copy.deepcopy(same), usage={"ai": {"requests.cpu": "61"}})
    assert d.allowed and d.group == "ai"
    assert all(v == 0 for v in d.delta.values())
    with pytest.raises(AssertionError, match="second time"):  # a changed one is still read
        evaluate(policy, deployment("ai", replicas=4, cpu="2"), "UPDATE", old=same, usage={})


def test_shrinking_is_allowed_even_over_quota(policy: CompiledPolicy) -> None:
    old = deployment("ai", replicas=5, cpu="2")
    new = deployment("ai", replicas=1, cpu="2")
    d = evaluate(policy, new, "UPDATE", old=old, usage={"ai": {"requests.cpu": "99"}})
    assert d.allowed and d.delta["requests.cpu"] == -q("8")


def test_label_move_releases_old_group_and_charges_new_in_full(policy: CompiledPolicy) -> None:
    old = deployment("ai", replicas=2, cpu="1")
    new = deployment("root", replicas=2, cpu="1")
    d = evaluate(policy, new, "UPDATE", old=old)
    assert d.allowed
    assert d.charges["ai"]["requests.cpu"] == -q("2")
    assert d.charges["root"]["requests.cpu"] == q("2")


def test_warn_mode_allows_with_short_warnings(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("lab", replicas=11, cpu="1"))
    assert d.allowed and d.mode == "warn" and d.violations
    assert d.warnings and all(len(w) <= 120 for w in d.warnings)
    assert "requests.cpu" in d.warnings[0]
    assert d.charges["lab"]["requests.cpu"] == q("11")


def test_audit_mode_is_inherited_and_annotates(policy: CompiledPolicy) -> None:
    assert policy.groups["audited"].mode == "audit"
    d = evaluate(policy, deployment("audited", replicas=5, cpu="1"))
    assert d.allowed and d.mode == "audit"
    assert d.audit_annotations["quotalang.dev/would-deny"].startswith("quota exceeded in group root/lab/audited")


def test_threshold_warning(policy: CompiledPolicy) -> None:
    # ai requests.cpu 60; used 50 + 4 = 54 = 90% → warn, still allowed
    d = evaluate(policy, deployment("ai", replicas=4, cpu="1"), usage={"ai": {"requests.cpu": "50"}})
    assert d.allowed
    assert d.warnings == ["ai at 90% of requests.cpu (54 of 60)"]


def test_cash_spent_denies_new_gpu_usage_but_not_cpu(policy: CompiledPolicy) -> None:
    usage = {"ai": {"cash": {"requests.nvidia.com/gpu": "600h"}}}
    d = evaluate(policy, deployment("ai", gpu=1), usage=usage)
    assert not d.allowed
    assert d.message == (
        "cash budget spent in group root/ai: cash requests.nvidia.com/gpu per week spent: used 600h of 600h"
    )
    assert evaluate(policy, deployment("ai", cpu="1"), usage=usage).allowed


def test_cash_warns_past_the_threshold(policy: CompiledPolicy) -> None:
    # 540h of 600h = 90%
    d = evaluate(policy, deployment("ai", gpu=1), usage={"ai": {"cash": {"requests.nvidia.com/gpu": 540}}})
    assert d.allowed
    assert d.warnings == ["ai has spent 540h of 600h cash requests.nvidia.com/gpu per week"]


def test_unknown_group_is_denied_with_near_names(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("aii"))
    assert not d.allowed and d.reason == "unknown-group"
    assert "did you mean ai" in d.message


def test_unlabelled_is_allowed_by_default_and_not_charged(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment(None))
    assert d.allowed and d.reason == "unlabelled" and d.charges == {}


@pytest.mark.parametrize(("rule", "allowed", "group"), [("deny", False, None), ("group lab", True, "lab")])
def test_unlabelled_rules(rule: str, allowed: bool, group: str | None) -> None:
    text = POLICY.replace('warn at 90%', f'warn at 90%\n  unlabelled {rule}')
    p = compile_sources(load_text(text, "p.quota"))
    d = evaluate(p, deployment(None))
    assert d.allowed is allowed and d.group == group


def test_kind_without_rule_is_not_charged(policy: CompiledPolicy) -> None:
    d = evaluate(policy, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"g": "ai"}}})
    assert d.allowed and d.reason == "no-rule" and d.charges == {}


def test_tfjob_parts_in_the_message(policy: CompiledPolicy) -> None:
    def spec(n: int, gpus: int) -> dict[str, Any]:
        return {"replicas": n, "template": {"spec": {"containers": [
            {"name": "t", "resources": {"requests": {"cpu": "100m", "nvidia.com/gpu": gpus}}}]}}}

    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
           "metadata": {"name": "j", "labels": {"g": "ai", "g/gpu": "A100"}},
           "spec": {"tfReplicaSpecs": {"Chief": spec(1, 1), "Worker": spec(2, 4)}}}
    # 1 × 1 + 2 × 4 = 9 A100 > 8
    d = evaluate(policy, job)
    assert not d.allowed
    assert "requests.nvidia.com/gpu.A100: requested 9 (1 × Chief 1 + 2 × Worker 4), used 0 of 8, 8 free" \
        in d.message


def test_scale_uses_the_stored_parent(policy: CompiledPolicy) -> None:
    parent = deployment("ai", replicas=2, cpu="10")
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale",
             "metadata": {"name": "web", "namespace": "ns"}, "spec": {"replicas": 7}}
    # ai 60 cpu, used 20: 7 × 10 = 70 → +50 → 70 > 60
    d = evaluate(policy, scale, "UPDATE", usage={"ai": {"requests.cpu": "20"}}, parent=parent)
    assert not d.allowed and d.delta["requests.cpu"] == q("50")
    scale["spec"]["replicas"] = 6  # +40 → 60 ≤ 60
    assert evaluate(policy, scale, "UPDATE", usage={"ai": {"requests.cpu": "20"}}, parent=parent).allowed


def test_scale_without_parent_is_denied(policy: CompiledPolicy) -> None:
    scale = {"kind": "Scale", "metadata": {"name": "web", "namespace": "ns"}, "spec": {"replicas": 3}}
    d = evaluate(policy, scale, "UPDATE")
    assert not d.allowed and "cannot find the workload ns/web" in d.message


def test_hpa_max_replicas_is_checked_not_charged(policy: CompiledPolicy) -> None:
    target = deployment("ai", replicas=1, cpu="10")
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web"}, "spec": {"maxReplicas": 7,
                                                 "scaleTargetRef": {"kind": "Deployment", "name": "web"}}}
    # from 1 to 7 replicas: +60 cpu on top of 10 used → 70 > 60
    d = evaluate(policy, hpa, usage={"ai": {"requests.cpu": "10"}}, parent=target)
    assert not d.allowed and d.charges == {}
    hpa["spec"]["maxReplicas"] = 6  # +50 → 60
    d = evaluate(policy, hpa, usage={"ai": {"requests.cpu": "10"}}, parent=target)
    assert d.allowed and d.charges == {}


def test_rollout_needs_room_for_surge(policy: CompiledPolicy) -> None:
    old = deployment("ai", replicas=4, cpu="10", image="app:1")
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    # no delta, but 25% of 4 = 1 surge pod × 10 cpu must fit: used 55 + 10 > 60
    d = evaluate(policy, new, "UPDATE", old=old, usage={"ai": {"requests.cpu": "55"}})
    assert not d.allowed and d.violations[0].requested == q("10")
    assert evaluate(policy, new, "UPDATE", old=old, usage={"ai": {"requests.cpu": "50"}}).allowed
    # same template, no rollout: no surge room needed
    assert evaluate(policy, old, "UPDATE", old=old, usage={"ai": {"requests.cpu": "59"}}).allowed


def test_model_from_pod_template_label(policy: CompiledPolicy) -> None:
    obj = deployment("ai", gpu=1)
    obj["spec"]["template"]["metadata"] = {"labels": {"g/gpu": "T4"}}
    d = evaluate(policy, obj)
    assert d.usage["requests.nvidia.com/gpu.T4"] == parse_quantity("1")
    assert any("gpu model T4 from pod template label g/gpu" in line for line in d.explanation())


def test_delete_is_not_intercepted(policy: CompiledPolicy) -> None:
    assert evaluate(policy, deployment("ai"), "DELETE").allowed


def test_bad_snapshot_is_an_input_error(policy: CompiledPolicy) -> None:
    with pytest.raises(InputError, match=r"ai/requests\.cpu"):
        evaluate(policy, deployment("ai"), usage={"ai": {"requests.cpu": "lots"}})


def test_objects_controlled_by_a_charged_owner_are_not_charged_twice(policy: CompiledPolicy) -> None:
    rs = {**deployment("ai", replicas=3, cpu="10"), "kind": "ReplicaSet"}
    rs["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u1", "controller": True}]
    d = evaluate(policy, rs, usage={"ai": {"requests.cpu": "60"}})
    assert d.allowed and d.reason == "owned" and d.charges == {}
    # an owner no rule covers (or a non-controller reference) does not exempt the object
    rs["metadata"]["ownerReferences"][0]["kind"] = "SomeOperatorKind"
    assert not evaluate(policy, rs, usage={"ai": {"requests.cpu": "60"}}).allowed
    rs["metadata"]["ownerReferences"][0].update(kind="Deployment", controller=False)
    assert not evaluate(policy, rs, usage={"ai": {"requests.cpu": "60"}}).allowed


def test_an_owner_whose_rule_does_not_create_the_kind_exempts_nothing(policy: CompiledPolicy) -> None:
    """Issue 25 #1: a Pod (or a Deployment) named as the controller of a Deployment makes it free no more."""
    for owner in ({"apiVersion": "v1", "kind": "Pod"}, {"apiVersion": "apps/v1", "kind": "Deployment"}):
        dep = deployment("ai", replicas=3, cpu="10")
        dep["metadata"]["ownerReferences"] = [{**owner, "name": "tiny", "uid": "u1", "controller": True}]
        d = evaluate(policy, dep, usage={"ai": {"requests.cpu": "60"}})
        assert not d.allowed and d.reason == "over-quota"  # 30 cpu more on 60 of the group's limit


# ---- issue 13: what the pods will really be charged, and invalid objects

MUST_SPECIFY = """\
import "quotalang:policies/core.quota"
import "quotalang:policies/kubeflow.quota"

settings {
  group label "g"
  model label cpu "g/cpu"
  model label gpu "g/gpu"
}

group root {
  limits.cpu      10
  limits.cpu.A4    4
  requests.nvidia.com/gpu 16
}

group loose in root {
  mode warn
  limits.cpu       2
  limits.cpu.A4    1
  requests.nvidia.com/gpu 0
}

group gpus {
  requests.nvidia.com/gpu 16
}

group a4only {
  limits.cpu.A4 4
}
"""


@pytest.fixture(scope="module")
def strict() -> CompiledPolicy:
    return compile_sources(load_text(MUST_SPECIFY, "p.quota"))


def burst(group: str, cpu_type: str | None = "A4", replicas: Any = 15, resources: Any = None,
          namespace: str = "team") -> dict[str, Any]:
    """Finding 1: 15 replicas with requests.cpu 100m and no limits."""
    labels = {"g": group}
    if cpu_type:
        labels["g/cpu"] = cpu_type
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "burst", "namespace": namespace, "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "c", "resources": {"requests": {"cpu": "100m"}} if resources is None else resources}]}}}}


def test_a_container_without_the_limit_its_group_limits_is_denied_as_native_quota_does(strict: CompiledPolicy) -> None:
    d = evaluate(strict, burst("root"))
    assert not d.allowed and d.reason == "must-specify" and d.charges == {} and d.reservation == {}
    assert d.message.startswith("must specify limits.cpu for: container c (part pod) (group root limits limits.cpu:")
    assert "or add a LimitRange default" in d.message


def test_a_model_key_requires_its_generic_key_only_for_workloads_of_that_model(strict: CompiledPolicy) -> None:
    assert not evaluate(strict, burst("a4only", "A4")).allowed
    assert evaluate(strict, burst("a4only", "A2")).allowed  # limits.cpu.A4 does not concern an A2 workload
    assert evaluate(strict, burst("a4only", None)).allowed


def test_groups_that_limit_no_cpu_or_memory_require_nothing(strict: CompiledPolicy) -> None:
    assert evaluate(strict, burst("gpus")).allowed


def test_must_specify_in_warn_mode_is_allowed_with_a_warning(strict: CompiledPolicy) -> None:
    d = evaluate(strict, burst("loose", replicas=1))
    assert d.allowed and any("must specify limits.cpu" in w for w in d.warnings)


def test_a_limit_range_default_is_charged_and_satisfies_must_specify(strict: CompiledPolicy) -> None:
    lr = {"kind": "LimitRange", "metadata": {"name": "defaults", "namespace": "team"},
          "spec": {"limits": [{"type": "Container", "default": {"cpu": "200m"}}]}}
    # 15 × limits.cpu 200m = 3 of limits.cpu 10 and of limits.cpu.A4 4
    d = evaluate(strict, burst("root"), limit_ranges={"team": [lr]})
    assert d.allowed, d.message
    assert d.total["limits.cpu"] == d.total["limits.cpu.A4"] == parse_quantity("3").nanos
    assert d.total["requests.cpu"] == parse_quantity("1500m").nanos  # the container's own 100m, kept
    # 25 × 200m = 5 > limits.cpu.A4 4: denied as over quota, with the defaults charged
    d = evaluate(strict, burst("root", replicas=25), limit_ranges=lambda ns: [lr])
    assert not d.allowed and d.reason == "over-quota" and "limits.cpu.A4: requested 5" in d.message
    # another namespace's LimitRanges do not apply
    assert evaluate(strict, burst("root", namespace="other"), limit_ranges={"team": [lr]}).reason == "must-specify"


def test_an_invalid_limit_range_is_an_input_error(strict: CompiledPolicy) -> None:
    lr = {"kind": "LimitRange", "metadata": {"name": "bad"},
          "spec": {"limits": [{"type": "Container", "default": {"cpu": "-1"}}]}}
    with pytest.raises(InputError, match=r"LimitRange bad: spec.limits\[0\].default.cpu"):
        evaluate(strict, burst("root"), limit_ranges={"team": [lr]})


def negative_tfjob() -> dict[str, Any]:
    """Finding 2: a Chief of -8 GPUs and two Workers of 8 each."""
    def spec(n: int, gpus: str) -> dict[str, Any]:
        return {"replicas": n, "template": {"spec": {"containers": [
            {"name": "t", "resources": {"requests": {"nvidia.com/gpu": gpus}}}]}}}

    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "j", "labels": {"g": "gpus"}},
            "spec": {"tfReplicaSpecs": {"Chief": spec(1, "-8"), "Worker": spec(2, "8")}}}


@pytest.mark.parametrize(("obj", "field"), [
    (negative_tfjob(), "TFJob part Chief: container t resources.requests.nvidia.com/gpu is -8"),
    (burst("gpus", resources={"limits": "lots"}), "Deployment part pod: container c resources.limits is 'lots'"),
    (burst("gpus", resources={"requests": {"cpu": "1e1.5"}}), "container c resources.requests.cpu"),
    (burst("gpus", resources=["cpu"]), "container c resources is ['cpu'], not a mapping"),
    (burst("gpus", replicas="3"), "Deployment: spec.replicas is '3', not an integer"),
    (burst("gpus", replicas=-1), "Deployment: spec.replicas is -1: must be greater than or equal to 0"),
    (burst("gpus", replicas=2.5), "spec.replicas is 2.5, not an integer"),
])
def test_invalid_objects_raise_an_input_error_naming_the_field(strict: CompiledPolicy, obj: dict[str, Any],
                                                                field: str) -> None:
    with pytest.raises(InputError) as caught:
        evaluate(strict, obj)
    assert field in str(caught.value)


def test_overhead_and_pod_level_resources_are_checked_too(strict: CompiledPolicy) -> None:
    obj = burst("gpus")
    obj["spec"]["template"]["spec"]["overhead"] = {"cpu": "-1"}
    with pytest.raises(InputError, match=r"spec.overhead.cpu is -1"):
        evaluate(strict, obj)
    obj = burst("gpus")
    obj["spec"]["template"]["spec"]["resources"] = {"requests": {"memory": "-1Gi"}}
    with pytest.raises(InputError, match=r"spec.resources.requests.memory is -1Gi"):
        evaluate(strict, obj)


def test_a_negative_scale_is_an_input_error(strict: CompiledPolicy) -> None:
    parent = burst("gpus", replicas=1)
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "burst"}, "spec": {"replicas": -3}}
    with pytest.raises(InputError, match=r"Scale spec\.replicas is -3"):
        evaluate(strict, scale, "UPDATE", parent=parent)


CARVED_CASH = """\
import "quotalang:policies/core.quota"

settings {
  group label "g"
}

group lab {
  requests.nvidia.com/gpu 16
  cash requests.nvidia.com/gpu 2000h per week
}

group team in lab {
  requests.nvidia.com/gpu 8
  cash requests.nvidia.com/gpu 1000h per week
}
"""


def gpu_pod(group: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"g": group}},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}}


def test_a_parents_own_cash_is_its_budget_less_its_childrens() -> None:
    """Finding 3: lab's own share is 2000h − 1000h = 1000h; at 1200h spent it may not start GPU pods."""
    policy = compile_sources(load_text(CARVED_CASH, "p.quota"))
    assert policy.groups["lab"].cash_carved == {"requests.nvidia.com/gpu": 1000 * 3600 * 10**9}
    d = evaluate(policy, gpu_pod("lab"), usage={"lab": {"cash": {"requests.nvidia.com/gpu": "1200h"}}})
    assert not d.allowed
    assert "cash requests.nvidia.com/gpu per week spent: used 1200h of 2000h (1000h carved for children)" \
        in d.message
    # own use against own share (issue 26): 899h of 1000h is 89.9%, below 90%; 900h is 90%
    d = evaluate(policy, gpu_pod("lab"), usage={"lab": {"cash": {"requests.nvidia.com/gpu": "899h"}}})
    assert d.allowed and d.warnings == []
    d = evaluate(policy, gpu_pod("lab"), usage={"lab": {"cash": {"requests.nvidia.com/gpu": "900h"}}})
    assert d.allowed and d.warnings == ["lab has spent 900h of 1000h (own share) cash requests.nvidia.com/gpu per week"]
    # the child keeps its whole budget
    assert evaluate(policy, gpu_pod("team"), usage={"team": {"cash": {"requests.nvidia.com/gpu": "999h"}}}).allowed
