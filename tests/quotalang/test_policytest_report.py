"""`quotalang test` reports: JUnit read back by a standard XML parser, GitHub annotations, JSON."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from quotalang.cli import main

POLICY = """\
settings {
  group label "g"
}
group team {
  requests.cpu 2
}
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""

# One file with a PASS, a FAIL (3 pods of 1 cpu do not fit 2), an ERROR (no
# expectation) and a case whose name needs escaping; one unreadable file.
GOOD = """\
policy: policy
cases:
  - name: one replica fits
    workload: &web
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web, labels: {g: team}}
      spec:
        replicas: 1
        template: {spec: {containers: [{name: c, resources: {requests: {cpu: "1"}}}]}}
    dry_run: true
    expect: allow

  - name: "three replicas: <fit>, & 100%"
    workload: *web
    patch: {spec: {replicas: 3}}
    expect: allow

  - name: forgot the expectation
    workload: *web
"""

BROKEN = "policy: policy\ncases:\n  - name: [unclosed\n"  # PyYAML finds the problem at the end: line 4


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "p.quota").write_text(POLICY)
    (tmp_path / "good.test.yaml").write_text(GOOD)
    (tmp_path / "broken.test.yaml").write_text(BROKEN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["test", *argv], out=out)
    return code, out.getvalue()


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_junit_reads_back_with_the_right_counts(suite: Path) -> None:
    code, out = run(".", "--format", "junit")
    assert code == 1
    root = ET.fromstring(out)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("4", "1", "2", "0")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert set(suites) == {"broken.test.yaml", "good.test.yaml"}
    good = suites["good.test.yaml"]
    assert (good.get("tests"), good.get("failures"), good.get("errors")) == ("3", "1", "1")
    cases = good.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "one replica fits",
        "three replicas: <fit>, & 100%",
        "forgot the expectation",
    ]
    assert [c.get("line") for c in cases] == [str(line_of(GOOD, n)) for n in ("one replica", "three", "forgot")]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "- decision: allow"
    assert failure.text is not None and "+ decision: deny" in failure.text and "explanation:" in failure.text
    error = cases[2].find("error")
    assert error is not None and "case has no expectation" in (error.get("message") or "")
    (broken,) = suites["broken.test.yaml"].findall("testcase")
    assert broken.get("name") == "(test file)" and broken.find("error") is not None


def test_junit_of_an_all_passing_run(suite: Path) -> None:
    code, out = run("good.test.yaml", "--run", "one replica", "--format", "junit")
    assert code == 0
    root = ET.fromstring(out)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "0")


ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]+),line=(?P<line>\d+),title=(?P<title>[^:]*)::(?P<message>.*)$")


def test_github_annotations_are_well_formed_at_the_case_lines(suite: Path) -> None:
    code, out = run(".", "--format", "github")
    assert code == 1
    lines = out.splitlines()
    annotations = [ANNOTATION.match(line) for line in lines if line.startswith("::")]
    assert all(annotations), lines
    found = [(m["file"], int(m["line"]), m["title"]) for m in annotations if m]
    assert found == [
        ("broken.test.yaml", 4, "ERROR test file"),
        ("good.test.yaml", line_of(GOOD, "three replicas"), "FAIL three replicas%3A <fit>%2C & 100%25"),
        ("good.test.yaml", line_of(GOOD, "forgot"), "ERROR forgot the expectation"),
    ]
    fail = next(m for m in annotations if m and m["title"].startswith("FAIL"))
    # One line per annotation: newlines are %0A, a literal % is %25.
    assert "- decision: allow%0A+ decision: deny%0A" in fail["message"]
    assert "\n" not in fail["message"] and "%25" not in fail["message"].replace("100%25", "")
    assert lines[-1] == "4 cases: 1 passed, 1 failed, 2 errors"


def test_github_of_a_passing_run_has_no_annotations(suite: Path) -> None:
    code, out = run("good.test.yaml", "--run", "one replica", "--format", "github")
    assert code == 0 and out == "1 case: 1 passed\n"


def test_json_report_shape(suite: Path) -> None:
    code, out = run(".", "--format", "json")
    assert code == 1
    report = json.loads(out)
    assert (report["passed"], report["failed"], report["errors"]) == (1, 1, 2)
    fail = next(c for c in report["cases"] if c["status"] == "FAIL")
    assert fail["mismatches"] == [{"field": "decision", "expected": "allow", "actual": "deny"}]
    assert fail["decision"]["outcome"] == "deny" and fail["decision"]["violations"][0]["resource"] == "requests.cpu"
    assert fail["line"] == line_of(GOOD, "three replicas")
    assert "coverage" not in report


def test_text_report_lists_every_case_with_its_status(suite: Path) -> None:
    code, out = run(".")
    assert code == 1
    heads = [line.split()[0:2] for line in out.splitlines() if line.startswith(("PASS ", "FAIL ", "ERROR "))]
    assert heads == [
        ["ERROR", "broken.test.yaml:4"],
        ["PASS", f"good.test.yaml:{line_of(GOOD, 'one replica')}"],
        ["FAIL", f"good.test.yaml:{line_of(GOOD, 'three replicas')}"],
        ["ERROR", f"good.test.yaml:{line_of(GOOD, 'forgot')}"],
    ]
    assert "not valid YAML" in out
    assert "requests.cpu: requested 3 (3 × pod 1), used 0 of 2, 2 free" in out
