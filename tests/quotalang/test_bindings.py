"""Issue 26: who may charge a group, which model a pod really runs on, warnings that mean something.

Every expected value is worked out by hand from the policy text above it.
Each test names the finding of the issue it pins down; on the code before
bindings each one fails (the label alone chose the group and the model, and
carved quota counted as used).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from quotalang.bindings import parse_pattern
from quotalang.checker import check as check_all
from quotalang.compiler import compile_sources
from quotalang.evaluator import evaluate, resolve_group
from quotalang.fmt import format_source
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy

KINDS = 'import "quotalang:policies/core.quota"\n'

POLICY = KINDS + """\
settings {
  group label "acme.io/team"
  model label gpu "acme.io/gpu-model"
  model gpu A100 "NVIDIA-A100-SXM4-80GB" "NVIDIA-A100-PCIE-40GB"
  model gpu T4 "Tesla-T4"
  node label gpu "nvidia.com/gpu.product"
  unlabelled deny
}

group ai {
  namespaces "ai"
  requests.cpu                   100
  requests.nvidia.com/gpu         16
  requests.nvidia.com/gpu.A100     8
}

group llm in ai {
  namespaces "llm", "llm-*"
  default namespaces "llm-dev"
  requests.cpu                    40
  requests.nvidia.com/gpu          8
  requests.nvidia.com/gpu.A100     4
}

group vision in ai {
  mode warn
  namespaces "vision", "vision-*", "eu-1/shared"
  requests.cpu                    40
  requests.nvidia.com/gpu          8
  requests.nvidia.com/gpu.A100     4
}

group cpu-only {
  namespaces "batch"
  requests.cpu                    10
}
"""


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(POLICY, "p.quota"))


def deployment(
    namespace: str,
    team: str | None = "llm",
    gpus: int = 0,
    selector: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    resources = {"requests": {"cpu": "1", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}}
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": resources}]}
    if selector is not None:
        spec["nodeSelector"] = selector
    meta_labels = dict(labels or {})
    if team is not None:
        meta_labels["acme.io/team"] = team
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "w", "namespace": namespace, "labels": meta_labels},
        "spec": {"replicas": 2, "template": {"spec": spec}},
    }


A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}


def check(sources: Any) -> list[Any]:
    """The checker's findings less W301 (the snippets here have no kind rules)."""
    return [d for d in check_all(sources) if d.code != "W301"]


# ------------------------------------------------------------------ finding 1: anyone can charge any group
def test_a_namespace_may_charge_only_the_groups_that_bind_it(policy: CompiledPolicy) -> None:
    denied = evaluate(policy, deployment("vision-dev", "llm"))
    assert not denied.allowed and denied.reason == "not-bound" and denied.charges == {}
    assert denied.message == (
        'namespace vision-dev may not charge quota group ai/llm (it binds "ai", "llm", "llm-*", "llm-dev"); '
        "vision-dev is bound to group ai/vision"
    )
    admitted = evaluate(policy, deployment("llm-dev", "llm"))
    assert admitted.allowed and admitted.group == "llm"
    assert admitted.charges == {"llm": {"requests.cpu": 2 * 10**9, "cpu": 2 * 10**9, "pods": 2 * 10**9,
                                         "count/pods": 2 * 10**9}}


def test_a_binding_covers_the_subtree_but_not_the_parent(policy: CompiledPolicy) -> None:
    # ai binds "ai": its child llm may be charged from there; llm's "llm-*" does not let llm-x charge ai
    assert evaluate(policy, deployment("ai", "llm")).allowed
    d = evaluate(policy, deployment("llm-x", "ai"))
    assert not d.allowed and d.reason == "not-bound"


def test_the_review_namespace_wins_over_the_objects(policy: CompiledPolicy) -> None:
    obj = deployment("llm", "llm")
    assert not evaluate(policy, obj, namespace="vision").allowed
    assert resolve_group(policy, obj, namespace="vision") == (
        None,
        'namespace vision may not charge quota group ai/llm (it binds "ai", "llm", "llm-*", "llm-dev"); '
        "vision is bound to group ai/vision",
    )
    assert resolve_group(policy, obj) == ("llm", None)


def test_a_pattern_may_name_the_cluster(policy: CompiledPolicy) -> None:
    assert evaluate(policy, deployment("shared", "vision"), cluster="eu-1").reason == "charged"
    # another cluster's `shared` is bound to no group: outside quota
    assert evaluate(policy, deployment("shared", "vision"), cluster="us-1").reason == "outside-quota"


def test_warn_mode_admits_with_the_binding_warning(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm", "vision"))
    assert d.allowed and d.group == "vision" and d.charges["vision"]["requests.cpu"] == 2 * 10**9
    assert d.warnings[0].startswith("vision: namespace llm may not charge quota group ai/vision")


def test_a_label_move_is_checked_against_the_new_group(policy: CompiledPolicy) -> None:
    old = deployment("llm", "llm")
    d = evaluate(policy, deployment("llm", "cpu-only"), "UPDATE", old=old)
    assert not d.allowed and d.reason == "not-bound" and "quota group cpu-only" in d.message


def test_scale_follows_its_parent(policy: CompiledPolicy) -> None:
    parent = deployment("vision-dev", "llm")  # stored before bindings: the scale is refused like the parent
    scale = {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "w", "namespace": "vision-dev"},
             "spec": {"replicas": 3}}
    d = evaluate(policy, scale, "UPDATE", parent=parent)
    assert not d.allowed and d.reason == "not-bound"


# ------------------------------------------------------------------ finding 2 and 6: unlabelled, defaults
def test_an_unlabelled_workload_charges_its_namespaces_default_group(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm-dev", None))
    assert d.allowed and d.group == "llm"
    d = evaluate(policy, deployment("llm", None))  # no default there: `unlabelled deny`
    assert not d.allowed and d.reason == "unlabelled" and d.message.startswith("workload has no label acme.io/team")


def test_a_namespace_no_group_binds_is_outside_quota(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("default", "llm", gpus=1, selector=A100))
    assert d.allowed and d.reason == "outside-quota" and d.charges == {}
    assert "namespace default is bound to no quota group: outside quota, not charged" in d.notes


def test_unbound_namespaces_deny() -> None:
    text = POLICY.replace("unlabelled deny", "unlabelled deny\n  unbound namespaces deny")
    strict = compile_sources(load_text(text, "p.quota"))
    d = evaluate(strict, deployment("default", "llm"))
    assert not d.allowed and d.reason == "unbound-namespace"
    assert 'bind it in a group: namespaces "default"' in d.message


def test_a_policy_without_bindings_behaves_as_before_and_lint_warns() -> None:
    text = KINDS + 'settings {\n  group label "t"\n}\n\ngroup a {\n  requests.cpu 10\n}\n'
    loose = compile_sources(load_text(text, "p.quota"))
    obj = {**deployment("anywhere", None), "metadata": {"namespace": "anywhere", "labels": {"t": "a"}}}
    assert evaluate(loose, obj).group == "a"
    assert [(w.code, str(w.span)) for w in loose.warnings] == [("W401", "p.quota:6:7")]


def test_two_default_groups_for_one_namespace_is_an_error() -> None:
    text = 'group a {\n  default namespaces "team-*"\n}\ngroup b {\n  default namespaces "other", "team-x"\n}\n'
    found = [(d.code, str(d.span)) for d in check(load_text(text, "p.quota"))]
    assert found == [("E402", "p.quota:5:31")]
    # different clusters never claim the same namespace
    text = 'group a {\n  default namespaces "eu/team-x"\n}\ngroup b {\n  default namespaces "us/team-x"\n}\n'
    assert check(load_text(text, "p.quota")) == []


@pytest.mark.parametrize("text", ["Nlp", "nlp-*-x", "-nlp", "a/b/c", "", "nlp_x", "x" * 64])
def test_malformed_patterns_are_errors(text: str) -> None:
    assert parse_pattern(text) is None
    found = check(load_text(f'group a {{\n  namespaces "{text}"\n}}\n', "p.quota"))
    assert [(d.code, str(d.span)) for d in found] == [("E401", "p.quota:2:14")]


# ------------------------------------------------------------------ finding 3: models the scheduler enforces
def test_the_pin_decides_the_model_whatever_the_label_says(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm", gpus=1, selector=A100))
    assert d.allowed and d.charges["llm"]["requests.nvidia.com/gpu.A100"] == 2 * 10**9
    # a lowercase label cannot escape the A100 key any more: the pin wins... and the label must agree
    d = evaluate(policy, deployment("llm", gpus=1, selector=A100, labels={"acme.io/gpu-model": "a100"}))
    assert not d.allowed and d.reason == "model-conflict"
    assert d.message == (
        "part pod: workload label acme.io/gpu-model says a100 but the pod template pins "
        "nvidia.com/gpu.product to NVIDIA-A100-SXM4-80GB (A100)"
    )


def test_a_t4_label_pinned_to_a100_is_denied(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm", gpus=1, selector=A100, labels={"acme.io/gpu-model": "T4"}))
    assert not d.allowed and d.reason == "model-conflict"


def test_no_pin_in_a_group_limiting_a100_is_denied_naming_label_and_values(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm", gpus=1))
    assert not d.allowed and d.reason == "model-not-pinned"
    assert d.message == (
        "must pin a gpu model for: part pod (group ai/llm limits requests.nvidia.com/gpu.A100): "
        "set nodeSelector nvidia.com/gpu.product to one gpu model: "
        "A100 (NVIDIA-A100-SXM4-80GB, NVIDIA-A100-PCIE-40GB), T4 (Tesla-T4)"
    )
    # no GPU requested: nothing to pin
    assert evaluate(policy, deployment("llm", gpus=0)).allowed


def test_an_undeclared_node_value_is_denied_naming_the_declared_ones(policy: CompiledPolicy) -> None:
    d = evaluate(policy, deployment("llm", gpus=1, selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}))
    assert not d.allowed and d.reason == "unknown-model"
    assert "NVIDIA-H100-80GB-HBM3, not a declared gpu model; declared: A100 (" in d.message


def test_required_node_affinity_pins_too(policy: CompiledPolicy) -> None:
    obj = deployment("llm", gpus=1)
    both = {"key": "nvidia.com/gpu.product", "operator": "In",
            "values": ["NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-PCIE-40GB"]}
    obj["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [both]}]}}}
    d = evaluate(policy, obj)
    assert d.allowed and d.charges["llm"]["requests.nvidia.com/gpu.A100"] == 2 * 10**9
    # a second term letting the pods onto T4 nodes too is not one model
    two = copy.deepcopy(obj)
    terms = two["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    terms.append({"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["Tesla-T4"]}]})
    d = evaluate(policy, two)
    assert not d.allowed and d.reason == "model-not-pinned"
    # NotIn leaves the label open
    terms[:] = [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["Tesla-T4"]}]}]
    assert evaluate(policy, two).reason == "model-not-pinned"


def test_self_declared_models_refuse_undeclared_values() -> None:
    text = KINDS + """\
settings {
  group label "t"
  model label gpu "t/gpu"
  model gpu A100
  model gpu T4
}

group a {
  namespaces "a"
  requests.nvidia.com/gpu       8
  requests.nvidia.com/gpu.A100  4
}
"""
    selfish = compile_sources(load_text(text, "p.quota"))

    def labelled(model: str) -> dict[str, Any]:
        obj = deployment("a", None, gpus=1)
        obj["metadata"]["labels"] = {"t": "a", "t/gpu": model}
        return obj

    assert evaluate(selfish, labelled("A100")).charges["a"]["requests.nvidia.com/gpu.A100"] == 2 * 10**9
    for wrong in ("a100", "H100"):
        d = evaluate(selfish, labelled(wrong))
        assert not d.allowed and d.reason == "unknown-model"
        assert d.message == f"part pod: workload label t/gpu is '{wrong}', not a declared gpu model; declared: A100, T4"


# ------------------------------------------------------------------ finding 6: annotations as sources
def test_group_and_model_from_annotations() -> None:
    text = KINDS + """\
settings {
  group annotation "ti.cloud.tencent.com/group-id"
  model annotation gpu "ti.cloud.tencent.com/gpu-type"
}

group a {
  namespaces "a"
  requests.nvidia.com/gpu       8
  requests.nvidia.com/gpu.A100  4
}
"""
    ti = compile_sources(load_text(text, "p.quota"))
    obj = deployment("a", None, gpus=1)
    obj["metadata"]["annotations"] = {"ti.cloud.tencent.com/group-id": "a", "ti.cloud.tencent.com/gpu-type": "A100"}
    d = evaluate(ti, obj)
    assert d.group == "a" and d.charges["a"]["requests.nvidia.com/gpu.A100"] == 2 * 10**9
    # the same keys as labels are not read
    obj["metadata"]["labels"] = obj["metadata"].pop("annotations")
    assert evaluate(ti, obj).reason == "unlabelled"
    # one source per setting
    both = text.replace('  model annotation', '  group label "x"\n  model annotation')
    assert [d.code for d in check(load_text(both, "p.quota"))] == ["E201"]


# ------------------------------------------------------------------ finding 5: warnings that cry wolf
WARN = KINDS + """\
settings {
  group label "t"
  warn at 90%
}

group research {
  namespaces "r"
  requests.cpu 192
  cash requests.nvidia.com/gpu 1000h per week
  requests.nvidia.com/gpu 10
}

group bob in research {
  requests.cpu 176
  cash requests.nvidia.com/gpu 1000h per week
  requests.nvidia.com/gpu 8
}
"""


def cpu_pods(group: str, cpus: int, gpus: int = 0) -> dict[str, Any]:
    obj = deployment("r", None, gpus=gpus)
    obj["metadata"]["labels"] = {"t": group}
    obj["spec"]["replicas"] = 1
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = str(cpus)
    return obj


def test_carved_quota_is_not_use() -> None:
    # research: hard 192, carved 176 (bob), own room 16. 6 own used + 1 = 7 of 16 (43%); subtree 7 of 192
    policy = compile_sources(load_text(WARN, "p.quota"))
    d = evaluate(policy, cpu_pods("research", 1), usage={"research": {"requests.cpu": "6"}})
    assert d.allowed and d.warnings == []
    # own 14 + 1 = 15 of 16 (93%): warned against its own share
    d = evaluate(policy, cpu_pods("research", 1), usage={"research": {"requests.cpu": "14"}})
    assert d.warnings == ["research at 93% of its own share of requests.cpu (15 of 16)"]
    # subtree: bob uses 170, research 2 + 1 = 3 → 173 of 192 = 90%: warned for the subtree only
    usage = {"research": {"requests.cpu": "2"}, "bob": {"requests.cpu": "170"}}
    d = evaluate(policy, cpu_pods("research", 1), usage=usage)
    assert d.warnings == ["research with its subgroups at 90% of requests.cpu (173 of 192)"]


def test_no_cash_warning_at_nothing_spent() -> None:
    # research's own cash share is 1000h − 1000h = 0h: a GPU pod there is refused (spent 0 ≥ 0), never warned
    policy = compile_sources(load_text(WARN, "p.quota"))
    d = evaluate(policy, cpu_pods("research", 0, gpus=1))
    assert not d.allowed and d.warnings == []
    text = WARN.replace("cash requests.nvidia.com/gpu 1000h per week\n  requests.nvidia.com/gpu 8",
                        "cash requests.nvidia.com/gpu 950h per week\n  requests.nvidia.com/gpu 8")
    # own share 50h, 0h spent: (0 + 950) / 1000 was 95% before; now nothing is spent, so nothing to say
    d = evaluate(compile_sources(load_text(text, "p.quota")), cpu_pods("research", 0, gpus=1))
    assert d.allowed and d.warnings == []


def test_a_denial_carries_no_warnings_computed_as_if_admitted() -> None:
    # bob: requests.cpu 176 used 100, asks 100 → 200 > 176 denied; gpu 8: 7 + 1 = 8 (100%) would warn if admitted
    policy = compile_sources(load_text(WARN, "p.quota"))
    usage = {"bob": {"requests.cpu": "100", "requests.nvidia.com/gpu": "7"}}
    d = evaluate(policy, cpu_pods("bob", 100, gpus=1), usage=usage)
    assert not d.allowed and d.reason == "over-quota" and d.warnings == []


# ------------------------------------------------------------------ the syntax
def test_fmt_is_idempotent_and_keeps_comments() -> None:
    text = """\
settings {
  group annotation "a.io/g"   # where
  model gpu A100 "X", "Y"
  node label gpu "nvidia.com/gpu.product"
  unbound namespaces deny
}
group g {
  # who
  namespaces "a" "b-*"    # trailing
  default namespaces "a"
  requests.cpu 1
}
"""
    once = format_source(text)
    assert once == """\
settings {
  group annotation    "a.io/g"  # where
  model               gpu A100 "X" "Y"
  node label          gpu "nvidia.com/gpu.product"
  unbound namespaces  deny
}

group g {
  # who
  namespaces "a", "b-*"  # trailing
  default namespaces "a"
  requests.cpu  1
}
"""
    assert format_source(once) == once
