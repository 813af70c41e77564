"""The pre-commit hooks (.pre-commit-hooks.yaml), run by pre-commit itself with `try-repo`.

pre-commit builds the hooks' virtualenv by pip-installing this checkout (the
base install only, from PyPI), once for the module; each test then runs the
three hooks in a fresh git repository that holds a policy and a policy test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]

CLEAN = """\
import "quotalang:policies"

settings {
  group label  "quota.group"
}

group root {
  requests.cpu  10
}

group team in root {
  requests.cpu  4
}
"""

TEST = """\
policy: .

cases:
  - name: a 2-cpu pod fits the team's 4
    workload:
      apiVersion: v1
      kind: Pod
      metadata: {name: p, namespace: team, labels: {quota.group: team}}
      spec:
        containers:
          - name: c
            image: example/c:1
            resources: {requests: {cpu: "2"}}
    expect:
      decision: allow
"""


@pytest.fixture(scope="module")
def hooks_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None:
        pytest.fail("pre-commit needs git")
    return tmp_path_factory.mktemp("pre-commit-home")


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def policy_repo(tmp_path: Path, policy: str) -> Path:
    repo = tmp_path / "policies"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "org.quota").write_text(policy)
    (repo / "org.test.yaml").write_text(TEST)
    git(repo, "add", "-A")
    return repo


def try_repo(repo: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PRE_COMMIT_HOME": str(home), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([*PRE_COMMIT, "try-repo", str(ROOT), "--all-files", "--color", "never"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_the_hooks_pass_on_a_clean_policy(tmp_path: Path, hooks_home: Path) -> None:
    repo = policy_repo(tmp_path, CLEAN)
    done = try_repo(repo, hooks_home)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("quotalang lint", "quotalang fmt", "quotalang test"):
        assert any(line.startswith(name) and line.endswith("Passed") for line in done.stdout.splitlines()), done.stdout
    assert (repo / "org.quota").read_text() == CLEAN


def test_lint_and_test_fail_on_an_over_allocated_policy(tmp_path: Path, hooks_home: Path) -> None:
    repo = policy_repo(tmp_path, CLEAN.replace("requests.cpu  4", "requests.cpu  12"))
    done = try_repo(repo, hooks_home)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("quotalang lint") and line.endswith("Failed") for line in lines), done.stdout
    assert "E105" in done.stdout and "children of root over-allocate requests.cpu: 12 > 10 (team 12)" in done.stdout
    assert any(line.startswith("quotalang fmt") and line.endswith("Passed") for line in lines), done.stdout


def test_fmt_rewrites_a_misformatted_file_and_fails_the_commit(tmp_path: Path, hooks_home: Path) -> None:
    repo = policy_repo(tmp_path, CLEAN.replace("  requests.cpu  4", "requests.cpu    4"))
    done = try_repo(repo, hooks_home)
    assert done.returncode == 1
    assert any(line.startswith("quotalang fmt") and line.endswith("Failed") for line in done.stdout.splitlines())
    assert "files were modified by this hook" in done.stdout
    assert (repo / "org.quota").read_text() == CLEAN
