"""action.yml's steps, run as GitHub runs them (`bash -eo pipefail`), on a temporary policy repository.

The action's `run:` scripts read only environment variables; this suite gives
each step the environment its `env:` block names (the few `${{ }}` forms the
file uses are evaluated here) and runs the script text itself, after the
install step has pip-installed this checkout into a fresh virtualenv.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ci.test_precommit import CLEAN, TEST

ROOT = Path(__file__).resolve().parents[2]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
_EXPR = re.compile(r"^\$\{\{\s*(.*?)\s*\}\}$")


def step(name: str) -> dict[str, Any]:
    (found,) = [s for s in ACTION["runs"]["steps"] if s["name"] == name]
    return found


def evaluate(value: str, inputs: dict[str, str], github: dict[str, str]) -> str:
    """`${{ inputs.x }}`, `${{ github.x }}` and `a || b`: what action.yml uses, nothing more."""
    match = _EXPR.match(value)
    if match is None:
        return value
    for term in match.group(1).split("||"):
        scope, _, name = term.strip().partition(".")
        found = (inputs if scope == "inputs" else github).get(name, "")
        if found:
            return found
    return ""


def inputs_with(**given: str) -> dict[str, str]:
    values = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
    values.update({k.replace("_", "-"): v for k, v in given.items()})
    return values


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PATH with a fresh virtualenv first, after the action's own install step ran in it."""
    where = tmp_path_factory.mktemp("action-venv")
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    env = {**os.environ, "PATH": f"{where / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "GITHUB_ACTION_PATH": str(ROOT), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step("install quotalang")["run"]],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert (where / "bin" / "quotalang").exists()
    return env


def run_step(name: str, repo: Path, venv: dict[str, str], inputs: dict[str, str],
             github: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    spec = step(name)
    env = dict(venv)
    env.update({key: evaluate(str(value), inputs, github or {}) for key, value in spec.get("env", {}).items()})
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", spec["run"]], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True)
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone of an `origin` whose main holds policies/org.quota and its test."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True, capture_output=True)
    git(work, "checkout", "-q", "-b", "main")
    (work / "policies" / "tests").mkdir(parents=True)
    (work / "policies" / "org.quota").write_text(CLEAN)
    (work / "policies" / "tests" / "org.test.yaml").write_text(TEST.replace("policy: .", "policy: .."))
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "policy")
    git(work, "push", "-q", "origin", "main")
    git(work, "checkout", "-q", "-b", "change")
    return work


def test_lint_passes_and_writes_sarif_test_writes_junit(repo: Path, venv: dict[str, str]) -> None:
    inputs = inputs_with(tests="policies/tests", sarif="out.sarif", junit="junit.xml")
    lint = run_step("quotalang lint", repo, venv, inputs)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "::error" not in lint.stdout
    sarif = (repo / "out.sarif").read_text()
    assert '"version": "2.1.0"' in sarif
    tests = run_step("quotalang test", repo, venv, inputs)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    cases = ET.parse(repo / "junit.xml").getroot().iter("testcase")
    assert [c.get("name") for c in cases] == ["a 2-cpu pod fits the team's 4"]


def test_lint_annotates_an_over_allocation_and_fails(repo: Path, venv: dict[str, str]) -> None:
    (repo / "policies" / "org.quota").write_text(CLEAN.replace("requests.cpu  4", "requests.cpu  12"))
    lint = run_step("quotalang lint", repo, venv, inputs_with())
    assert lint.returncode == 1
    annotations = [line for line in lint.stdout.splitlines() if line.startswith("::error")]
    assert annotations == ["::error file=policies/org.quota,line=8,col=3,title=E105::"
                           "children of root over-allocate requests.cpu: 12 > 10 (team 12)"]


def test_a_failing_policy_test_fails_with_junit_and_annotations(repo: Path, venv: dict[str, str]) -> None:
    (repo / "policies" / "org.quota").write_text(CLEAN.replace("requests.cpu  4", "requests.cpu  1"))
    tests = run_step("quotalang test", repo, venv, inputs_with(tests="policies/tests"))
    assert tests.returncode == 1
    failures = list(ET.parse(repo / "quotalang-junit.xml").getroot().iter("failure"))
    assert len(failures) == 1
    assert any(line.startswith("::error file=") for line in tests.stdout.splitlines()), tests.stdout


def test_diff_on_a_pull_request_reports_a_lowered_limit_over_usage(repo: Path, venv: dict[str, str]) -> None:
    (repo / "policies" / "org.quota").write_text(CLEAN.replace("requests.cpu  4", "requests.cpu  1"))
    git(repo, "commit", "-q", "-am", "lower team")
    (repo / "usage.yaml").write_text("team: {requests.cpu: 3}\n")
    pull_request = {"event_name": "pull_request", "base_ref": "main"}
    summary = repo / "summary.md"
    venv = {**venv, "GITHUB_STEP_SUMMARY": str(summary)}
    clean = run_step("quotalang diff against the base branch", repo, venv, inputs_with(), pull_request)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "    requests.cpu  4 -> 1  lowered\n" in clean.stdout and clean.stdout.endswith("no problems\n")
    over = run_step("quotalang diff against the base branch", repo, venv, inputs_with(usage="usage.yaml"),
                    pull_request)
    assert over.returncode == 1, over.stdout + over.stderr
    assert "  root/team: requests.cpu: used 3 + carved 0 > 1 (was 4)\n" in over.stdout
    assert "  team would be over its new limit of requests.cpu\n" in over.stdout
    assert summary.read_text().endswith(over.stdout)
