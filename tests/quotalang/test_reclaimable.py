"""Who may borrow (issue 29): `borrow below priority N`, kind rules' `suspend`, and the evaluator's gate.

The tree is test_lending_language's (test_borrowing's, with its lending
written): nlp (gpu 4, borrow 3) asking 6 GPUs while ai-platform's own 4 are
used borrows 2 (vision's lent 2, drawn at ai-platform). A request within
nlp's 4 borrows nothing, whatever its priority.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang.checker import check
from quotalang.cli import main
from quotalang.compiler import compile_sources
from quotalang.errors import Diagnostic
from quotalang.evaluator import evaluate
from quotalang.fmt import format_source
from quotalang.loader import load_text
from quotalang.policy import CompiledPolicy
from quotalang.reclaimable import priority_of
from tests.quotalang.test_lending_language import GPU, WRITTEN

LIBRARY = "".join(f'import "quotalang:policies/{name}.quota"\n' for name in ("core", "jobset", "kubeflow", "ray"))
USED = {"ai-platform": {GPU: "4"}}
CLASSES = {"high": 1000, "batch": 10}.get


def findings(text: str) -> list[Diagnostic]:
    return [d for d in check(load_text(text, "p.quota")) if d.code not in ("W301", "W302", "W401")]


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text(LIBRARY + WRITTEN, "tree.quota"))


def gpus(count: int) -> dict[str, Any]:
    amount = {"nvidia.com/gpu": str(count)}
    return {"containers": [{"name": "c", "resources": {"requests": amount, "limits": amount}}]}


def pod(count: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "labels": {"g": "nlp"}},
            "spec": {**gpus(count), **spec}}


def job(count: int, suspend: bool | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"parallelism": 1, "template": {"spec": {**gpus(count), **spec}}}
    if suspend is not None:
        body["suspend"] = suspend
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "n", "labels": {"g": "nlp"}}, "spec": body}


# ------------------------------------------------------------------ the language

def test_the_threshold_defaults_to_100_and_is_set_in_settings() -> None:
    assert compile_sources(load_text(WRITTEN, "t.quota")).settings.borrow_below == 100
    text = WRITTEN.replace('group label "g"\n', 'group label "g"\n  borrow below priority 50\n')
    assert compile_sources(load_text(text, "t.quota")).settings.borrow_below == 50


def test_the_threshold_given_twice_is_e201_and_fmt_keeps_it() -> None:
    text = "settings {\n  borrow below   priority 5\n  borrow below priority 6\n}\ngroup root {\n  pods 1\n}\n"
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E201", "p.quota:3:3")
    out = format_source(text, "p.quota")
    assert "  borrow below priority  5\n  borrow below priority  6\n" in out  # the value column, aligned
    assert format_source(out, "p.quota") == out


def test_the_shipped_library_names_each_kinds_real_suspend_field(policy: CompiledPolicy) -> None:
    suspend = {kind: rule.suspend_path for kind, rule in policy.kinds.items() if rule.suspend_path is not None}
    assert suspend == {
        ("batch/v1", "Job"): ("spec", "suspend"),
        ("jobset.x-k8s.io/v1alpha2", "JobSet"): ("spec", "suspend"),
        ("ray.io/v1", "RayJob"): ("spec", "suspend"),
        ("kubeflow.org/v1", "TFJob"): ("spec", "runPolicy", "suspend"),
        ("kubeflow.org/v1", "PyTorchJob"): ("spec", "runPolicy", "suspend"),
        ("kubeflow.org/v1", "MPIJob"): ("spec", "runPolicy", "suspend"),
        ("kubeflow.org/v2beta1", "MPIJob"): ("spec", "runPolicy", "suspend"),
    }


RULE = "kind example.com/v1 W {{\n  creates v1 Pod\n  suspend {path}\n  pods {{\n    replicas spec.n\n" \
       "    template spec.template\n  }}\n}}\n"


@pytest.mark.parametrize(("path", "code", "why"), [
    ("spec.*.suspend", "E309", "has a `*`"),
    (".suspend", "E309", "is relative"),
    ("spec.n", "E309", "is read by a part as a count or template"),
    ("spec.template", "E309", "is read by a part as a count or template"),
    ("spec.paused", "W303", "does not look like a boolean switch"),
])
def test_a_suspend_path_reclaim_cannot_set_is_named_at_its_column(path: str, code: str, why: str) -> None:
    (found,) = findings(RULE.format(path=path))
    assert (found.code, str(found.span)) == (code, "p.quota:3:11")
    assert f"suspend path {path} of kind rule example.com/v1 W {why}" in found.message


def test_a_suspend_path_given_twice_is_e305_and_fmt_keeps_both() -> None:
    text = RULE.format(path="spec.suspend").replace("  suspend spec.suspend\n",
                                                    "  suspend  spec.suspend\n  suspend spec.x.suspend\n")
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E305", "p.quota:4:11")
    out = format_source(text, "p.quota")
    assert "  suspend spec.suspend\n  suspend spec.x.suspend\n" in out


def test_a_suspended_job_charges_nothing_and_resuming_charges_it_in_full(policy: CompiledPolicy) -> None:
    # A Job of 3 GPUs suspended: 0 pods, nothing charged; resumed (an UPDATE from the suspended one): +3.
    suspended = evaluate(policy, job(3, suspend=True), usage={})
    assert suspended.allowed and suspended.total.get(GPU, 0) == 0
    resumed = evaluate(policy, job(3, suspend=False), "UPDATE", old=job(3, suspend=True), usage={})
    assert resumed.delta[GPU] == 3 * 10**9
    # `suspend: "true"` (a string) is not true: charged (the apiserver would refuse it anyway).
    assert evaluate(policy, job(3, suspend="true"), usage={}).total[GPU] == 3 * 10**9  # type: ignore[arg-type]


# ------------------------------------------------------------------ priority

def test_a_workloads_priority_is_its_highest_templates() -> None:
    low, high = {"spec": {"priorityClassName": "batch"}}, {"spec": {"priorityClassName": "high"}}
    assert priority_of([low, high], CLASSES) == 1000
    assert priority_of([{"spec": {}}, None]) == 0  # no class, no global default: 0, as Kubernetes
    assert priority_of([{"spec": {"priority": 7}}]) == 7
    # spec.priority below the class's value cannot make it lower: the larger (1000) counts.
    assert priority_of([{"spec": {"priorityClassName": "high", "priority": 5}}], CLASSES) == 1000
    assert priority_of([{"spec": {"priorityClassName": "system-node-critical"}}]) == 2_000_001_000
    # An unknown class (or no resolver for a named one) fails closed: unknown.
    assert priority_of([low, {"spec": {"priorityClassName": "nope"}}], CLASSES) is None
    assert priority_of([low]) is None
    assert priority_of([{"spec": {"priorityClassName": ["high"]}}], CLASSES) is None
    # The global default (the class named "") applies to a template that names none.
    assert priority_of([{"spec": {}}], {"": 500}.get) == 500


# ------------------------------------------------------------------ the gate

def test_a_preemptible_pod_may_borrow_and_says_it_is_deleted_to_reclaim(policy: CompiledPolicy) -> None:
    decision = evaluate(policy, pod(6, priorityClassName="batch"), usage=USED, priorities=CLASSES)
    assert decision.allowed and decision.reclaim is not None
    assert (decision.reclaim.how, decision.reclaim.priority) == ("delete", 10)


def test_a_non_preemptible_pod_beyond_its_guarantee_is_denied_saying_how_to_borrow(policy: CompiledPolicy) -> None:
    decision = evaluate(policy, pod(6, priorityClassName="high"), usage=USED, priorities=CLASSES)
    assert not decision.allowed and decision.reason == "over-quota"
    assert decision.charges == {} and decision.borrowed == ()
    # nlp's own: 0 used of 4, 4 free; the 6 asked are 2 beyond (borrowed), which only reclaimable work may.
    assert (f"{GPU}: requested 6 (1 × pod 6), used 0 of 4, 4 free, only reclaimable workloads may borrow: "
            "priority 1000 is not below 100 and v1 Pod has no suspend rule (use a PriorityClass below 100, "
            "or a kind with `suspend`)") in decision.message
    # Within its guarantee (4 of 4) the same pod borrows nothing and is admitted.
    assert evaluate(policy, pod(4, priorityClassName="high"), usage=USED, priorities=CLASSES).allowed


def test_an_unknown_class_fails_closed_for_borrowing(policy: CompiledPolicy) -> None:
    decision = evaluate(policy, pod(6, priorityClassName="nope"), usage=USED, priorities=CLASSES)
    assert not decision.allowed and "priority unknown is not below 100" in decision.message
    # eval / test with no resolver: spec.priority in the template gives the value.
    assert evaluate(policy, pod(6, priority=99), usage=USED).allowed
    assert not evaluate(policy, pod(6, priority=100), usage=USED).allowed  # 100 is not below 100


def test_a_suspendable_kind_may_borrow_whatever_its_priority(policy: CompiledPolicy) -> None:
    decision = evaluate(policy, job(6, priorityClassName="high"), usage=USED, priorities=CLASSES)
    assert decision.allowed and decision.reclaim is not None
    assert (decision.reclaim.how, decision.reclaim.priority) == ("suspend spec.suspend", 1000)


def test_a_lower_threshold_makes_the_same_pod_non_reclaimable() -> None:
    text = WRITTEN.replace('group label "g"\n', 'group label "g"\n  borrow below priority 10\n')
    policy = compile_sources(load_text(LIBRARY + text, "t.quota"))
    decision = evaluate(policy, pod(6, priorityClassName="batch"), usage=USED, priorities=CLASSES)
    assert not decision.allowed and "priority 10 is not below 10" in decision.message


def test_warn_mode_admits_a_non_reclaimable_borrower_with_the_reason() -> None:
    text = WRITTEN.replace("group nlp in ai-platform {\n", "group nlp in ai-platform {\n  mode warn\n")
    policy = compile_sources(load_text(LIBRARY + text, "t.quota"))
    decision = evaluate(policy, pod(6, priorityClassName="high"), usage=USED, priorities=CLASSES)
    assert decision.allowed and any("only reclaimable workloads may borrow" in w for w in decision.warnings)


def test_reclaim_by_delete_is_one_setting_that_fmt_keeps() -> None:
    text = "settings {\n  reclaim  by   delete\n  reclaim by delete\n}\ngroup root {\n  pods 1\n}\n"
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E201", "p.quota:3:3")
    assert "  reclaim by  delete\n" in format_source(text, "p.quota")  # the value column, aligned


def test_quotalang_test_files_say_what_the_classes_are_worth(tmp_path: Path) -> None:
    # test_lending_language's tree in the file: nlp's 6 GPUs borrow 2 (ai-platform's own 4 used: usage:).
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "p.quota").write_text(LIBRARY + WRITTEN)
    case = {"workload": pod(6, priorityClassName="batch"), "expect": {"decision": "warn",
                                                                      "message": "borrowed 2 of"}}
    high = {"workload": pod(6, priorityClassName="high") | {"metadata": {"name": "q", "namespace": "n",
                                                                         "labels": {"g": "nlp"}}},
            "expect": {"decision": "deny", "message": "priority 1000 is not below 100"}}
    spec = {"policy": "policy", "usage": {"ai-platform": {GPU: "4"}}, "priority_classes": {"batch": 10, "high": 1000},
            "cases": [high, case]}
    (tmp_path / "c.test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = io.StringIO()
    assert main(["test", str(tmp_path), "--format", "json"], out=out) == 0, out.getvalue()
    assert [c["status"] for c in json.loads(out.getvalue())["cases"]] == ["PASS", "PASS"]
    # A value that is not an integer is one error at its line, never a traceback.
    spec["priority_classes"] = {"batch": "low"}
    (tmp_path / "c.test.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    out = io.StringIO()
    assert main(["test", str(tmp_path)], out=out) != 0
    assert "priority class 'batch': the value must be an integer" in out.getvalue()
