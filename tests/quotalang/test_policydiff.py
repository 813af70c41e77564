"""`quotalang diff`: groups added / removed / moved, limits changed, usage stranded, --git."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from quotalang.cli import main

OLD = """\
group root {
  requests.cpu   100
  limits.memory  64Gi
  cash requests.cpu 1000h per week
}

group a in root {
  requests.cpu   40
  limits.memory  16Gi
  cash requests.cpu 400h per week
}

group a1 in a {
  requests.cpu   10
  limits.memory  4Gi
  cash requests.cpu 100h per week
}

group b in root {
  mode warn
  requests.cpu   40
  limits.memory  16Gi
  cash requests.cpu 400h per week
}
"""


def policy(tmp_path: Path, name: str, text: str) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "p.quota").write_text(text)
    return str(folder)


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["diff", *argv], out=out)
    return code, out.getvalue()


def run_json(*argv: str) -> tuple[int, dict[str, Any]]:
    code, out = run(*argv, "--format", "json")
    return code, json.loads(out)


def test_identical_policies_have_no_changes(tmp_path: Path) -> None:
    code, out = run(policy(tmp_path, "old", OLD), policy(tmp_path, "new", OLD))
    assert code == 0 and out.endswith("no changes\n")


def test_added_moved_and_changed(tmp_path: Path) -> None:
    new = (
        OLD.replace("group a1 in a {", "group a1 in b {").replace(  # moved: a carves 0 now, b carves 10
            "requests.cpu   40\n  limits.memory  16Gi\n  cash requests.cpu 400h per week\n}\n\ngroup a1",
            "requests.cpu   30\n  limits.memory  32Gi\n  cash requests.cpu 350h per week\n}\n\ngroup a1",
        )
        + "\ngroup c in root {\n  requests.cpu 5\n  limits.memory 1Gi\n  cash requests.cpu 10h per week\n}\n"
    )
    code, report = run_json(policy(tmp_path, "old", OLD), policy(tmp_path, "new", new))
    assert code == 0, report
    assert report["added"] == [{"name": "c", "parent": "root", "path": "root/c"}]
    assert report["removed"] == []
    assert report["reparented"] == [
        {"name": "a1", "old_parent": "a", "new_parent": "b", "old_path": "root/a/a1", "new_path": "root/b/a1"}
    ]
    assert report["changes"] == [
        {"group": "a", "key": "limits.memory", "old": "16Gi", "new": "32Gi", "change": "raised"},
        {"group": "a", "key": "requests.cpu", "old": "40", "new": "30", "change": "lowered"},
        {"group": "a", "key": "cash requests.cpu", "old": "400h per week", "new": "350h per week", "change": "lowered"},
        {"group": "a1", "key": "mode", "old": "enforce", "new": "warn", "change": "changed"},  # inherited from b
    ]
    assert report["problems"] == []


def test_text_output_reads_as_a_review(tmp_path: Path) -> None:
    new = OLD.replace("group a1 in a {\n  requests.cpu   10", "group a1 in a {\n  requests.cpu   8")
    code, out = run(policy(tmp_path, "old", OLD), policy(tmp_path, "new", new))
    assert code == 0
    assert "limits:\n  root/a/a1\n    requests.cpu  10 -> 8  lowered\nno problems\n" in out


def test_usage_over_the_new_limits_is_a_problem(tmp_path: Path) -> None:
    # a: requests.cpu 40 -> 25, a1 carves 10: a's own 20 + 10 = 30 > 25 (it was 30 of 40).
    # b: cash 400h -> 300h per week with 350h spent.
    new = OLD.replace("group a in root {\n  requests.cpu   40", "group a in root {\n  requests.cpu   25").replace(
        "mode warn\n  requests.cpu   40\n  limits.memory  16Gi\n  cash requests.cpu 400h",
        "mode warn\n  requests.cpu   40\n  limits.memory  16Gi\n  cash requests.cpu 300h",
    )
    usage = tmp_path / "usage.yaml"
    usage.write_text(
        "a: {requests.cpu: 20}\nb: {requests.cpu: 39, cash: {requests.cpu: 350h}}\nroot: {requests.cpu: 1}\n"
    )
    old_dir, new_dir = policy(tmp_path, "old", OLD), policy(tmp_path, "new", new)
    code, report = run_json(old_dir, new_dir, "--usage", str(usage))
    assert code == 1
    assert report["over_quota"] == [
        {
            "group": "a",
            "key": "requests.cpu",
            "used": "20",
            "carved": "10",
            "hard": "25",
            "old_hard": "40",
            "already_over": False,
            "cash": False,
        },
        {
            "group": "b",
            "key": "cash requests.cpu",
            "used": "350h",
            "carved": "0h",
            "hard": "300h per week",
            "old_hard": "400h per week",
            "already_over": False,
            "cash": True,
        },
    ]
    code, out = run(old_dir, new_dir, "--usage", str(usage))
    assert code == 1
    assert "  root/a: requests.cpu: used 20 + carved 10 > 25 (was 40)\n" in out
    assert "  root/b: cash requests.cpu: spent 350h > 300h per week (was 400h per week)\n" in out
    assert out.endswith("2 problem(s)\n")
    # Without usage the same change is only a review: no problems.
    assert run(old_dir, new_dir)[0] == 0


def test_removed_group_with_usage_strands_it(tmp_path: Path) -> None:
    new = OLD.replace(
        "group a1 in a {\n  requests.cpu   10\n  limits.memory  4Gi\n  cash requests.cpu 100h per week\n}\n", ""
    )
    usage = tmp_path / "usage.yaml"
    usage.write_text("a1: {requests.cpu: 3, limits.memory: 0}\n")
    old_dir, new_dir = policy(tmp_path, "old", OLD), policy(tmp_path, "new", new)
    code, report = run_json(old_dir, new_dir, "--usage", str(usage))
    assert code == 1
    assert report["removed"] == [
        {"name": "a1", "path": "root/a/a1", "children": [], "orphans": [], "usage": {"requests.cpu": "3"}}
    ]
    assert report["problems"] == ["removed group a1 still has usage: requests.cpu 3"]
    assert run(old_dir, new_dir)[0] == 0  # removing an idle leaf is fine


def test_removed_group_that_still_has_children(tmp_path: Path) -> None:
    new = OLD.replace(
        "group a in root {\n  requests.cpu   40\n  limits.memory  16Gi\n  cash requests.cpu 400h per week\n}\n", ""
    )
    code, out = run(policy(tmp_path, "old", OLD), policy(tmp_path, "new", new))
    assert code == 1
    assert "  - root/a\n" in out
    assert "removed group a still has children: a1" in out
    assert "error E102" in out  # and the new policy does not check


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = policy(tmp_path, "one", OLD)
    assert run(one)[0] == 2
    assert "two policy directories" in capsys.readouterr().err
    assert run(one, one, "--git", "HEAD")[0] == 2
    assert run(one, str(tmp_path / "missing"))[0] == 2
    bad = policy(tmp_path, "bad", "group {\n")
    assert run(one, bad)[0] == 2
    assert "error E00" in capsys.readouterr().err


def git(cwd: Path, *argv: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *argv], cwd=cwd, check=True, capture_output=True
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_compares_a_revision_with_the_working_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    (repo / "policies").mkdir(parents=True)
    (repo / "policies" / "p.quota").write_text(OLD)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "policy")
    (repo / "policies" / "p.quota").write_text(OLD.replace("requests.cpu   10", "requests.cpu   12"))
    monkeypatch.chdir(repo)
    code, out = run("--git", "HEAD", "policies")
    assert code == 0
    assert out.startswith("policy diff: policies@HEAD -> policies\n")
    assert "    requests.cpu  10 -> 12  raised\n" in out
    (repo / "policies" / "p.quota").write_text(OLD)
    assert run("--git", "HEAD", "policies")[1].endswith("no changes\n")
    assert run("--git", "no-such-rev", "policies")[0] == 2
    assert "cannot read policies at no-such-rev from git" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    plain = policy(tmp_path, "plain", OLD)
    assert run("--git", "HEAD", plain)[0] == 2  # not in a git repository


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_a_directory_absent_at_the_revision_is_an_empty_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26 #4: a policy's first pull request exited 2 with git's raw `pathspec` error."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README").write_text("x\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "policies").mkdir()
    (repo / "policies" / "p.quota").write_text(OLD)
    monkeypatch.chdir(repo)
    code, out = run("--git", "HEAD", "policies")
    assert code == 0, capsys.readouterr().err
    assert out.startswith("policy diff: policies@HEAD -> policies\n")
    assert "pathspec" not in out + capsys.readouterr().err
    assert "groups:\n  + root\n" in out and "\nno problems\n" in out
    code, out = run("--git", "HEAD", "policies", "--format", "json")
    added = [g["path"] for g in json.loads(out)["added"]]
    assert code == 0 and added == ["root", "root/a", "root/a/a1", "root/b"]
    assert run("--git", "no-such-rev", "policies")[0] == 2  # a bad revision is still an error
