"""`lend` / `borrow` in the language (issue 29): parsed on the limit's line, compiled, linted, kept by fmt."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from quotalang.borrowing import Draw, Lending
from quotalang.checker import check
from quotalang.cli import main
from quotalang.compiler import compile_sources
from quotalang.errors import Diagnostic, PolicyError
from quotalang.evaluator import evaluate
from quotalang.fmt import format_source
from quotalang.loader import load_text
from tests.quotalang.test_borrowing import LENDING, POLICY

N = 10**9
GPU = "requests.nvidia.com/gpu"
A100 = "requests.nvidia.com/gpu.A100"

# test_borrowing's tree, its lending written in the language.
WRITTEN = (
    POLICY.replace("group ai-platform in root {\n  requests.nvidia.com/gpu        12",
                   "group ai-platform in root {\n  requests.nvidia.com/gpu        12 borrow 4")
    .replace("group vision in ai-platform {\n  requests.nvidia.com/gpu         4\n"
             "  requests.nvidia.com/gpu.A100    4",
             "group vision in ai-platform {\n  requests.nvidia.com/gpu         4 lend 2\n"
             "  requests.nvidia.com/gpu.A100    4 lend 4")
    .replace("group nlp in ai-platform {\n  requests.nvidia.com/gpu         4\n"
             "  requests.nvidia.com/gpu.A100    4",
             "group nlp in ai-platform {\n  requests.nvidia.com/gpu         4 borrow 3\n"
             "  requests.nvidia.com/gpu.A100    4 borrow 4")
    .replace("group data in root {\n  requests.nvidia.com/gpu         6",
             "group data in root {\n  requests.nvidia.com/gpu         6 lend 3")
    .replace("group etl in data {\n  requests.nvidia.com/gpu         4",
             "group etl in data {\n  requests.nvidia.com/gpu         4 lend 1 borrow 2")
)

KINDS = 'import "quotalang:policies/core.quota"\n'


def findings(text: str) -> list[Diagnostic]:
    return [d for d in check(load_text(text, "p.quota")) if d.code not in ("W301", "W401")]


def test_the_written_tree_compiles_to_the_hand_built_lending() -> None:
    assert WRITTEN.count(" lend ") == 4 and WRITTEN.count(" borrow ") == 4  # every replace took
    policy = compile_sources(load_text(WRITTEN, "tree.quota"))
    assert policy.lending == LENDING
    assert policy.groups["vision"].hard[GPU] == 4 * N  # the hard limit reads as before


def test_without_lend_or_borrow_the_policy_has_no_lending() -> None:
    assert not compile_sources(load_text(POLICY, "tree.quota")).lending


def test_fmt_keeps_lend_and_borrow_on_the_limits_line() -> None:
    text = "group root {\n  requests.cpu 10\n}\n\ngroup a in root {\n  requests.cpu   4   lend 2   borrow 1  # c\n}\n"
    out = format_source(text, "p.quota")
    assert "  requests.cpu  4 lend 2 borrow 1  # c\n" in out  # the value column as fmt aligns it
    assert format_source(out, "p.quota") == out
    lending = compile_sources(load_text(out, "p.quota")).lending
    assert lending == Lending({"a": {"requests.cpu": 2 * N}}, {"a": {"requests.cpu": 1 * N}})


def test_a_lend_above_the_hard_limit_is_e116_at_the_lend() -> None:
    text = "group root {\n  pods 8\n}\ngroup a in root {\n  pods 4 lend 5\n}\n"
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E116", "p.quota:5:15")
    assert "group a lends 5 of pods, more than its hard limit 4" in found.message


def test_a_borrow_with_nothing_to_lend_is_e117() -> None:
    # root 8 = a 4 + b 4: root keeps no room of its own and a lends nothing, so b's borrow can never be met.
    text = "group root {\n  pods 8\n}\ngroup a in root {\n  pods 4\n}\ngroup b in root {\n  pods 4 borrow 2\n}\n"
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E117", "p.quota:8:17")
    # Room kept at root (9 = 4 + 4 + 1), or a sibling that lends: no finding.
    assert findings(text.replace("pods 8", "pods 9")) == []
    assert findings(text.replace("  pods 4\n}\ngroup b", "  pods 4 lend 1\n}\ngroup b")) == []


def test_a_root_that_borrows_is_e117_and_one_that_lends_warns() -> None:
    (borrows,) = findings("group root {\n  pods 8 borrow 1\n}\n")
    assert borrows.code == "E117" and "a root has no one to borrow from" in borrows.message
    (lends,) = findings("group root {\n  pods 8 lend 1\n}\n")
    assert (lends.code, lends.severity, str(lends.span)) == ("W105", "warning", "p.quota:2:15")


def test_cash_never_lends_or_borrows_e118() -> None:
    text = "group root {\n  pods 8\n  cash pods 10h per week borrow 2h\n}\n"
    (found,) = findings(text)
    assert (found.code, str(found.span)) == ("E118", "p.quota:3:33")
    with pytest.raises(PolicyError):
        compile_sources(load_text(text, "p.quota"))


def test_a_lend_that_is_not_a_quantity_is_e109() -> None:
    (found,) = findings("group root {\n  pods 8\n}\ngroup a in root {\n  pods 4 lend 2x\n}\n")
    assert (found.code, str(found.span)) == ("E109", "p.quota:5:15")


def test_a_decision_through_the_written_policy_says_what_it_borrowed() -> None:
    # test_borrowing's case: ai-platform's own 4 used; nlp asks 6 GPUs: 2 beyond its 4, vision's lent 2,
    # drawn at ai-platform. A pod asking 6 GPUs, labelled nlp.
    policy = compile_sources(load_text(KINDS + WRITTEN, "tree.quota"))
    six = {"requests": {"nvidia.com/gpu": "6"}, "limits": {"nvidia.com/gpu": "6"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "labels": {"g": "nlp"}},
           "spec": {"containers": [{"name": "c", "resources": six}]}}
    decision = evaluate(policy, pod, usage={"ai-platform": {GPU: "4"}})
    assert decision.allowed and decision.touches == ("ai-platform",)
    assert decision.borrowed == (Draw("ai-platform", GPU, 2 * N),)
    assert f"borrowed 2 of {GPU} from root/ai-platform" in decision.explanation()
    # 8 GPUs: 4 beyond nlp's hard, more than its borrow 3: denied, saying so.
    pod["spec"]["containers"][0]["resources"] = {"requests": {"nvidia.com/gpu": "8"},
                                                     "limits": {"nvidia.com/gpu": "8"}}
    denied = evaluate(policy, pod, usage={"ai-platform": {GPU: "4"}})
    assert not denied.allowed and "1 short beyond the 3 it may borrow" in denied.message


def test_a_warn_mode_group_past_its_borrow_is_admitted_and_locks_what_it_draws_on() -> None:
    # nlp in warn mode, ai-platform's own 4 used: 8 GPUs is 4 beyond nlp's hard, 1 past its borrow 3.
    # Allowed with the warning; its share stops at −3, so it still draws 2 at ai-platform (vision's lent 2)
    # and 1 at root, and the decision names both, for the store to decide it under their locks.
    text = WRITTEN.replace("group nlp in ai-platform {\n", "group nlp in ai-platform {\n  mode warn\n")
    policy = compile_sources(load_text(KINDS + text, "tree.quota"))
    eight = {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "n", "labels": {"g": "nlp"}},
           "spec": {"containers": [{"name": "c", "resources": eight}]}}
    decision = evaluate(policy, pod, usage={"ai-platform": {GPU: "4"}})
    assert decision.allowed and decision.mode == "warn"
    assert any("1 short beyond the 3 it may borrow" in w for w in decision.warnings)
    assert decision.touches == ("ai-platform", "root")
    assert decision.borrowed == (Draw("ai-platform", GPU, 2 * N), Draw("root", GPU, 1 * N))


@pytest.mark.parametrize(
    ("value", "code"), [("1e200", "E109"), ("-1", "E110"), ("0.5", "E110"), ("99999999999999999999999", "E116")]
)
def test_hostile_lend_values_are_named_at_their_column(value: str, code: str) -> None:
    # Read and judged as a limit's value is (out of range, negative, a fraction of a pod), or larger than hard.
    (found,) = findings(f"group root {{\n  pods 8\n}}\ngroup a in root {{\n  pods 4 lend {value}\n}}\n")
    assert (found.code, str(found.span)) == (code, "p.quota:5:15")


def test_quotalang_test_states_borrowing_expectations(tmp_path: Path) -> None:
    # team 4 cpu borrow 1, root 10 = team 4 + other 4 (own room 2). 4 one-cpu pods fit team's own 4
    # (allow); the fifth borrows 1 from root, a warning the user sees (warn); the sixth is 2 beyond, 1 short.
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "p.quota").write_text(
        'import "quotalang:policies/core.quota"\nsettings {\n  group label "g"\n}\n'
        "group root {\n  requests.cpu 10\n}\ngroup team in root {\n  requests.cpu 4 borrow 1\n}\n"
        "group other in root {\n  requests.cpu 4\n}\n"
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p0", "namespace": "ns", "labels": {"g": "team"}},
           "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}}]}}
    cases = [{"name": f"pod {i}", "workload": pod, "patch": {"metadata": {"name": f"p{i}"}},
              "expect": "warn" if i == 3 else "allow"} for i in range(4)]  # the fourth: team at 100% (warn at 90%)
    cases.append({"name": "borrows", "workload": pod, "patch": {"metadata": {"name": "p4"}},
                  "expect": {"decision": "warn", "message": "team borrowed 1 of requests.cpu from root"}})
    cases.append({"name": "past its borrow", "workload": pod, "patch": {"metadata": {"name": "p5"}},
                  "expect": {"decision": "deny", "message": "1 short beyond the 1 it may borrow",
                             "used": {"team": {"requests.cpu": 5}}}})
    (tmp_path / "b.test.yaml").write_text(yaml.safe_dump({"policy": "policy", "cases": cases}, sort_keys=False))
    out = io.StringIO()
    code = main(["test", str(tmp_path), "--format", "json"], out=out)
    report = json.loads(out.getvalue())
    assert code == 0, report
    assert [c["status"] for c in report["cases"]] == ["PASS"] * 6
