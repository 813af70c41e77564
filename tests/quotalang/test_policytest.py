"""`quotalang test`: the file format, chained usage, no vacuous passes, exit codes.

Expected numbers are computed by hand from POLICY below: team may use
requests.cpu 4 and requests.nvidia.com/gpu.A100 2; every pod of `deploy()`
asks for 1 cpu (and `gpus` A100s when given).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

POLICY = """\
settings {
  group label "g"
  model label gpu "g/gpu"
}

group root {
  requests.cpu                  10
  requests.nvidia.com/gpu        8
  requests.nvidia.com/gpu.A100   4
}

group team in root {
  requests.cpu                   4
  requests.nvidia.com/gpu        4
  requests.nvidia.com/gpu.A100   2
}

group other in root {
  mode warn
  requests.cpu                   4
  requests.nvidia.com/gpu        0
  requests.nvidia.com/gpu.A100   0
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
}

kind batch/v1 Job {
  pods {
    replicas spec.parallelism default 1
    template spec.template
  }
}
"""


def deploy(
    name: str = "web", group: str | None = "team", replicas: int = 1, gpus: int = 0, model: str | None = None
) -> dict[str, Any]:
    labels = {} if group is None else {"g": group}
    if model:
        labels["g/gpu"] = model
    requests: dict[str, str] = {"cpu": "1"}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}},
        },
    }


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "p.quota").write_text(POLICY)
    return tmp_path


def write(suite: Path, name: str, data: Any) -> Path:
    path = suite / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["test", *argv], out=out)
    return code, out.getvalue()


def run_json(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out = run(*argv, "--format", "json")
    return code, json.loads(out)


def statuses(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["name"], c["status"]) for c in report["cases"]]


# ------------------------------------------------------------------ examples
def test_the_example_suite_passes() -> None:
    code, out = run(str(EXAMPLES))
    assert code == 0, out
    assert "FAIL" not in out and "ERROR" not in out
    last = out.strip().splitlines()[-1]
    total, passed = last.split(" cases: ")
    assert passed == f"{total} passed" and int(total) >= 50


def test_examples_exercise_every_shipped_kind_rule() -> None:
    code, report = run_json(str(EXAMPLES / "tests"), "--coverage")
    assert code == 0
    (cov,) = report["coverage"]
    assert cov["kinds"]["never"] == [] and cov["kinds"]["total"] == 15


def mutated_examples(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of examples/ whose models.test.yaml has `old` replaced by `new` (once)."""
    copy = tmp_path / "examples"
    for sub in ("policies", "workloads", "tests"):
        shutil.copytree(EXAMPLES / sub, copy / sub)
    target = copy / "tests" / "models.test.yaml"
    text = target.read_text()
    assert text.count(old) == 1
    target.write_text(text.replace(old, new))
    return target


def test_a_mutated_expectation_fails_with_a_readable_diff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The third 8-GPU A100 job is denied (16 + 8 > 16); claim it is allowed.
    target = mutated_examples(
        tmp_path,
        "      decision: deny\n      resources: [requests.nvidia.com/gpu.A100]",
        "      decision: allow\n      resources: [requests.nvidia.com/gpu.A100]",
    )
    monkeypatch.chdir(tmp_path)
    code, out = run("examples")
    assert code == 1
    line = (
        target.read_text().splitlines().index("  - name: the third 8-GPU A100 job is denied on the A100 key alone") + 1
    )
    lines = out.splitlines()
    head = f"FAIL   examples/tests/models.test.yaml:{line}  the third 8-GPU A100 job is denied on the A100 key alone"
    at = lines.index(head)
    assert lines[at + 1 : at + 3] == ["       - decision: allow", "       + decision: deny"]
    assert lines[at + 3].startswith(
        "       decision: DENIED CREATE PyTorchJob train-3 (kubeflow.org/v1) in root/ai-platform/nlp/bob"
    )
    assert "used 16 of 16, 0 free" in lines[at + 4]
    assert "       explanation:" in lines and "         group root/ai-platform/nlp/bob (mode enforce)" in lines
    assert out.strip().endswith("1 failed")


def test_a_mutated_number_fails_naming_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mutated_examples(
        tmp_path,
        "usage: {requests.nvidia.com/gpu: 8, requests.nvidia.com/gpu.A100: 8}",
        "usage: {requests.nvidia.com/gpu: 8, requests.nvidia.com/gpu.A100: 9}",
    )
    monkeypatch.chdir(tmp_path)
    code, out = run("examples/tests/models.test.yaml")
    assert code == 1
    assert "- usage.requests.nvidia.com/gpu.A100: 9\n" in out and "+ usage.requests.nvidia.com/gpu.A100: 8\n" in out


# ------------------------------------------------------------ the format
def test_chained_cases_carry_admitted_usage(suite: Path) -> None:
    # team: A100 2. One 1-GPU job fits (1), the second fills it (2, warns at 100%), the third is denied.
    case = {"workload": deploy(gpus=1, model="A100"), "expect": "allow"}
    write(
        suite,
        "chain.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {"name": "first", **case},
                {"name": "second", **case, "patch": {"metadata": {"name": "web-2"}}, "expect": "warn"},
                {
                    "name": "third",
                    **case,
                    "patch": {"metadata": {"name": "web-3"}},
                    "expect": {
                        "decision": "deny",
                        "resources": ["requests.nvidia.com/gpu.A100"],
                        "message": "requests.nvidia.com/gpu.A100: requested 1 (1 × pod 1), used 2 of 2, 0 free",
                        "used": {"team": {"requests.nvidia.com/gpu.A100": 2, "requests.cpu": 2}},
                    },
                },
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0, report
    assert statuses(report) == [("first", "PASS"), ("second", "PASS"), ("third", "PASS")]


def test_starting_usage_and_cash(suite: Path) -> None:
    (suite / "policy" / "p.quota").write_text(
        POLICY.replace(
            "requests.nvidia.com/gpu.A100   4\n}",
            "requests.nvidia.com/gpu.A100   4\n  cash requests.nvidia.com/gpu 100h per week\n}",
            1,
        )
        .replace(
            "requests.nvidia.com/gpu.A100   2\n}",
            "requests.nvidia.com/gpu.A100   2\n  cash requests.nvidia.com/gpu 10h per week\n}",
            1,
        )
        .replace(
            "requests.nvidia.com/gpu.A100   0\n}",
            "requests.nvidia.com/gpu.A100   0\n  cash requests.nvidia.com/gpu 0h per week\n}",
            1,
        )
    )
    write(
        suite,
        "cash.test.yaml",
        {
            "policy": "policy",
            "usage": {"team": {"requests.cpu": 3, "cash": {"requests.nvidia.com/gpu": "10h"}}},
            "cases": [
                {
                    "name": "cpu still fits (3 + 1 = 4 of 4, a warning)",
                    "workload": deploy(),
                    "expect": {"decision": "warn", "message": "team at 100% of requests.cpu (4 of 4)"},
                },
                {
                    "name": "cpu is full now",
                    "workload": deploy("b"),
                    "expect": {"decision": "deny", "resources": ["requests.cpu"]},
                },
                {
                    "name": "gpu cash spent",
                    "workload": deploy("c", replicas=0, gpus=1),
                    "expect": {"decision": "allow"},
                },  # 0 replicas: nothing added, nothing checked
                {
                    "name": "gpu cash spent, 1 replica",
                    "workload": deploy("d", gpus=1),
                    "expect": {
                        "decision": "deny",
                        "resources": ["requests.cpu", "requests.nvidia.com/gpu"],
                        "message_regex": r"cash requests\.nvidia\.com/gpu per week spent: used 10h of 10h$",
                    },
                },
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0, report


def test_update_without_old_uses_the_version_admitted_earlier_and_label_moves(suite: Path) -> None:
    write(
        suite,
        "update.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {"name": "create 2", "workload": deploy(replicas=2), "expect": "allow"},
                {
                    "name": "grow to 3: delta 1",
                    "workload": deploy(replicas=3),
                    "operation": "UPDATE",
                    "expect": {
                        "decision": "allow",
                        "delta": {"requests.cpu": 1},
                        "used": {"team": {"requests.cpu": 3}},
                    },
                },
                {
                    "name": "move to other: release 3 in team, charge 3 in other",
                    "operation": "UPDATE",
                    "workload": deploy(replicas=3, group="other"),
                    "expect": {
                        "decision": "allow",
                        "group": "other",
                        "delta": {"requests.cpu": 3},
                        "used": {"team": {"requests.cpu": 0}, "other": {"requests.cpu": 3}},
                    },
                },
                {
                    "name": "dry run books nothing",
                    "workload": deploy("x", group="other"),
                    "dry_run": True,
                    "expect": {"decision": "warn", "used": {"other": {"requests.cpu": 3}}},
                },
                {
                    "name": "scale in other to 5 is over (warn mode admits and books it)",
                    "workload": deploy(replicas=3),
                    "scale": 5,
                    "expect": {
                        "decision": "warn",
                        "resources": ["requests.cpu"],
                        "used": {"other": {"requests.cpu": 5}},
                    },
                },
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0, json.dumps(report, indent=1)


def test_explicit_old_and_scale_of_an_unadmitted_workload(suite: Path) -> None:
    write(
        suite,
        "old.test.yaml",
        {
            "policy": "policy",
            "usage": {"team": {"requests.cpu": 2}},
            "cases": [
                {
                    "name": "update with old (2 -> 4 adds 2: 2 + 2 = 4 of 4)",
                    "workload": deploy(replicas=4),
                    "old": deploy(replicas=2),
                    "expect": {"decision": "warn", "delta": {"requests.cpu": 2}},
                },
                {
                    "name": "scale a stored object",
                    "workload": deploy(replicas=1),
                    "scale": 5,
                    "expect": {
                        "decision": "deny",
                        "delta": {"requests.cpu": 1},
                        "message": "requests.cpu: requested 1 (+1 to 5 × pod 1), used 4 of 4, 0 free",
                    },
                },
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0, json.dumps(report, indent=1)


def test_workload_from_a_file_with_patch(suite: Path) -> None:
    write(suite, "web.yaml", deploy(replicas=1))
    write(
        suite,
        "file.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {
                    "workload": "web.yaml",
                    "patch": {"spec": {"replicas": 5}},
                    "expect": {"decision": "deny", "usage": {"requests.cpu": 5, "pods": 5}},
                }
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0 and statuses(report) == [("case 1", "PASS")]


# --------------------------------------------------------- no vacuous passes
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty test file"),
        ("# only a comment\n", 1, "empty test file"),
        ("policy: policy\ncases: []\n", 2, "no cases"),
        ("policy: policy\n", 1, "no cases"),
        ("policy: policy\ncases: [\n", 3, "not valid YAML"),
        ("policy: policy\ncases:\n  - {workload: web.yaml}\n---\ncases: []\n", 4, "one YAML document"),
        ("cases:\n  - {workload: web.yaml, expect: allow}\n", 1, "no policy"),
        ("policy: nowhere\ncases:\n  - {workload: web.yaml, expect: allow}\n", 1, "does not compile"),
        (
            "policy: policy\nusage: {tema: {requests.cpu: 1}}\ncases:\n  - {workload: web.yaml, expect: allow}\n",
            2,
            "unknown group 'tema'; did you mean team?",
        ),
        (
            "policy: policy\nusage: {team: {requests.cpu: lots}}\ncases:\n  - {workload: web.yaml, expect: allow}\n",
            2,
            "usage of team/requests.cpu",
        ),
        ("polcy: policy\ncases: []\n", 1, "unknown test file key 'polcy'; did you mean 'policy'?"),
    ],
)
def test_bad_files_are_one_error_at_their_line(suite: Path, text: str, line: int, message: str) -> None:
    write(suite, "web.yaml", deploy())
    write(suite, "bad.test.yaml", text)
    code, report = run_json(str(suite / "bad.test.yaml"))
    assert code == 1
    (case,) = report["cases"]
    assert (case["status"], case["line"], case["name"]) == ("ERROR", line, "(test file)")
    assert message in case["error"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ({"workload": "web.yaml"}, "case has no expectation"),
        ({"workload": "web.yaml", "expext": "allow"}, "unknown case key 'expext'; did you mean 'expect'?"),
        ({"workload": "web.yaml", "expect": {"message": "x"}}, "expect has no decision"),
        ({"workload": "web.yaml", "expect": "maybe"}, "decision 'maybe' is not one of allow, deny, warn, audit"),
        (
            {"workload": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}, "expect": "allow"},
            "ConfigMap c (v1): no kind rule matches; not charged; the policy would not check it, "
            "so this case tests nothing",
        ),
        ({"workload": "missing.yaml", "expect": "allow"}, "workload: missing.yaml:1: cannot read"),
        ({"expect": "allow"}, "case has no workload"),
        ({"workload": {"kind": "Deployment"}, "expect": "allow"}, "workload has no apiVersion"),
        (
            {"workload": "web.yaml", "operation": "DELETE", "expect": "allow"},
            "operation 'DELETE' is not CREATE or UPDATE",
        ),
        (
            {"workload": "web.yaml", "operation": "UPDATE", "expect": "allow"},
            "UPDATE without old: and no earlier case in this file admitted Deployment web",
        ),
        ({"workload": "web.yaml", "expect": {"decision": "deny", "message_regex": "("}}, "message_regex '('"),
        (
            {"workload": "web.yaml", "expect": {"decision": "allow", "usage": {"requests.cpu": "x"}}},
            "usage requests.cpu",
        ),
        (
            {"workload": "web.yaml", "expect": {"decision": "allow", "used": {"nobody": {"pods": 1}}}},
            "expect.used names unknown group 'nobody'",
        ),
        ({"workload": "web.yaml", "scale": -1, "expect": "allow"}, "scale must be a replica count"),
        (
            {
                "workload": {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                             "metadata": {"name": "h", "namespace": "ns"},
                             "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "gone"}, "maxReplicas": 9}},
                "expect": "warn",
            },
            "its scaleTargetRef was not admitted earlier in this file and no parent: is given",
        ),
    ],
)
def test_cases_that_cannot_run_are_errors_not_passes(suite: Path, case: dict[str, Any], message: str) -> None:
    write(suite, "web.yaml", deploy())
    path = write(
        suite,
        "c.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {"name": "ok", "workload": "web.yaml", "expect": "allow", "dry_run": True},
                {"name": "bad", **case},
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 1
    assert statuses(report) == [("ok", "PASS"), ("bad", "ERROR")]
    assert message in report["cases"][1]["error"]
    assert report["cases"][1]["line"] == path.read_text().splitlines().index("- name: bad") + 1


def test_a_second_create_of_an_admitted_object_is_an_error(suite: Path) -> None:
    write(
        suite,
        "twice.test.yaml",
        {
            "policy": "policy",
            "cases": [{"workload": deploy(), "expect": "allow"}, {"workload": deploy(), "expect": "allow"}],
        },
    )
    code, report = run_json(str(suite))
    assert code == 1 and statuses(report) == [("case 1", "PASS"), ("case 2", "ERROR")]
    assert "AlreadyExists" in report["cases"][1]["error"]


def test_allow_is_strict_warnings_make_it_warn(suite: Path) -> None:
    write(
        suite,
        "strict.test.yaml",
        {
            "policy": "policy",
            "usage": {"team": {"requests.cpu": 3}},
            "cases": [{"workload": deploy(), "expect": "allow"}],
        },
    )
    code, out = run(str(suite))
    assert code == 1
    assert "- decision: allow\n" in out and "+ decision: warn\n" in out
    assert "team at 100% of requests.cpu (4 of 4)" in out


def test_audit_outcome(suite: Path) -> None:
    (suite / "policy" / "p.quota").write_text(POLICY.replace("mode warn", "mode audit"))
    write(
        suite,
        "audit.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {
                    "workload": deploy(group="other", replicas=5),
                    "expect": {
                        "decision": "audit",
                        "resources": ["requests.cpu"],
                        "message": "quota exceeded in group root/other: "
                        "requests.cpu: requested 5 (5 × pod 1), used 0 of 4, 4 free",
                    },
                }
            ],
        },
    )
    code, report = run_json(str(suite))
    assert code == 0, report


# ------------------------------------------------------------- the command
def test_discovery_finds_test_files_only(suite: Path) -> None:
    (suite / "sub").mkdir()
    (suite / ".hidden").mkdir()
    case = {"policy": "../policy", "cases": [{"workload": deploy(), "expect": "allow"}]}
    write(suite, "sub/a.test.yaml", case)
    write(suite, "sub/b.test.yml", case)
    write(suite, "sub/c.yaml", "not: a test")
    write(suite, ".hidden/d.test.yaml", "broken: [")
    code, report = run_json(str(suite))
    assert code == 0
    assert [Path(c["file"]).name for c in report["cases"]] == ["a.test.yaml", "b.test.yml"]


def test_no_test_files_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(str(tmp_path))[0] == 2
    assert "no test files" in capsys.readouterr().err
    assert run(str(tmp_path / "nope"))[0] == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_run_filters_reported_cases_but_keeps_the_chain(suite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = {"workload": deploy(gpus=1, model="A100")}
    write(
        suite,
        "chain.test.yaml",
        {
            "policy": "policy",
            "cases": [
                {"name": "first", **case, "expect": "allow"},
                {"name": "second", **case, "patch": {"metadata": {"name": "b"}}, "expect": "warn"},
                {"name": "third is denied", **case, "patch": {"metadata": {"name": "c"}}, "expect": "deny"},
            ],
        },
    )
    code, report = run_json(str(suite), "--run", "third")
    assert code == 0 and statuses(report) == [("third is denied", "PASS")]
    code, report = run_json(str(suite), "--run", r"chain\.test\.yaml::(first|second)$")
    assert code == 0 and statuses(report) == [("first", "PASS"), ("second", "PASS")]
    assert run(str(suite), "--run", "nothing-matches")[0] == 2
    assert run(str(suite), "--run", "(")[0] == 2
    assert "not a regular expression" in capsys.readouterr().err


def test_verbose_shows_passing_decisions(suite: Path) -> None:
    write(
        suite, "v.test.yaml", {"policy": "policy", "cases": [{"name": "fits", "workload": deploy(), "expect": "allow"}]}
    )
    quiet = run(str(suite))[1]
    loud = run(str(suite), "-v")[1]
    assert "PASS" in quiet and "ALLOWED CREATE Deployment web (apps/v1) in root/team (mode enforce)" not in quiet
    assert "ALLOWED CREATE Deployment web (apps/v1) in root/team (mode enforce)" in loud


def test_coverage_lists_what_was_never_touched(suite: Path) -> None:
    write(suite, "c.test.yaml", {"policy": "policy", "cases": [{"workload": deploy(), "expect": "allow"}]})
    code, out = run(str(suite), "--coverage")
    assert code == 0
    assert "  groups: 1 of 3 exercised; never: root, other\n" in out
    assert "  kind rules: 1 of 2 exercised; never: batch/v1 Job\n" in out
    report = run_json(str(suite), "--coverage")[1]
    assert report["coverage"][0]["groups"] == {"total": 3, "exercised": ["team"], "never": ["root", "other"]}


def test_policy_option_overrides_the_files(suite: Path) -> None:
    (suite / "strict").mkdir()
    (suite / "strict" / "p.quota").write_text(
        POLICY.replace(
            "requests.cpu                   4\n  requests.nvidia.com/gpu        4",
            "requests.cpu                   0\n  requests.nvidia.com/gpu        4",
        )
    )
    write(suite, "c.test.yaml", {"policy": "policy", "cases": [{"workload": deploy(), "expect": "allow"}]})
    assert run(str(suite))[0] == 0
    code, out = run(str(suite), "--policy", str(suite / "strict"))
    assert code == 1 and "+ decision: deny" in out


def test_output_writes_the_report_and_prints_text(suite: Path) -> None:
    write(suite, "c.test.yaml", {"policy": "policy", "cases": [{"name": "n", "workload": deploy(), "expect": "deny"}]})
    target = suite / "report.json"
    code, out = run(str(suite / "c.test.yaml"), "--format", "json", "--output", str(target))
    assert code == 1
    assert json.loads(target.read_text())["failed"] == 1
    assert out.startswith("FAIL ") and out.strip().endswith("1 case: 0 passed, 1 failed")


def test_unwritable_output_is_a_usage_error(suite: Path) -> None:
    write(suite, "c.test.yaml", {"policy": "policy", "cases": [{"workload": deploy(), "expect": "allow"}]})
    assert run(str(suite), "--output", str(suite / "no" / "such" / "dir.xml"))[0] == 2
