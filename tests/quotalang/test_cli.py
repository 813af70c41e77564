"""The command line: exit codes, JSON shapes, and no tracebacks."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quotalang.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "policies"
WORKLOADS = ROOT / "examples" / "workloads"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_lint_examples_is_clean() -> None:
    code, out = run("lint", str(EXAMPLES))
    assert code == 0 and "ok: no findings" in out


def test_lint_json_lists_findings_with_locations(tmp_path: Path) -> None:
    (tmp_path / "p.quota").write_text(
        'import "quotalang:policies"\ngroup a {\n  limits.cpu 1\n}\n'
        'group b in a {\n  namespaces "b"\n  limits.cpu 2\n}\n'
    )
    code, out = run("lint", str(tmp_path), "--format", "json")
    assert code == 1
    findings = json.loads(out)
    assert [(f["code"], f["line"], f["column"], f["severity"]) for f in findings] == [("E105", 3, 3, "error")]
    assert set(findings[0]) >= {"file", "line", "column", "severity", "code", "message"}


def test_lint_syntax_error_is_a_finding_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.quota").write_text("group a {\n  limits.cpu\n}\n")
    code, out = run("lint", str(tmp_path))
    assert code == 1
    assert "p.quota:2:13: error E001" in out and "Traceback" not in out + capsys.readouterr().err


def test_lint_github_annotations(tmp_path: Path) -> None:
    (tmp_path / "p.quota").write_text("group a {\n  limits.cpu 1\n}\n")
    code, out = run("lint", str(tmp_path), "--format", "github")
    assert code == 0  # warnings only: W301, no kind rules
    assert out.startswith("::warning file=") and ",line=1,col=7,title=W301::" in out
    (tmp_path / "p.quota").write_text('import "quotalang:policies"\ngroup a {\n  limits.cpuu 1\n  namespaces "a"\n}\n')
    code, out = run("lint", str(tmp_path), "--format", "github")
    assert code == 1  # an unknown resource name is an error (issue 26 #4)
    assert out.startswith("::error file=") and ",line=3,col=3,title=E113::" in out


def test_lint_lists_kinds() -> None:
    code, out = run("lint", str(EXAMPLES), "--list-kinds")
    assert code == 0 and "kubeflow.org/v1 TFJob" in out and "apps/v1 Deployment" in out


def test_eval_json_shape_for_a_denial() -> None:
    code, out = run("eval", str(WORKLOADS / "tfjob-too-big.yaml"), "--policy", str(EXAMPLES), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert {"allowed", "group", "mode", "usage", "violations", "warnings"} <= set(data)
    assert data["allowed"] is False
    (violation,) = data["violations"]
    assert set(violation) >= {"resource", "requested", "used", "hard", "free"}
    assert violation["resource"] == "requests.nvidia.com/gpu.A100"


def test_eval_allowed_exit_zero_and_usage_snapshot(tmp_path: Path) -> None:
    code, out = run("eval", str(WORKLOADS / "tfjob.yaml"), "--policy", str(EXAMPLES), "--format", "json")
    assert code == 0
    data = json.loads(out)
    group = data["group"]
    gpus = data["usage"]["requests.nvidia.com/gpu"]
    # a snapshot that leaves less room than the job needs turns the same request into a denial
    usage = tmp_path / "usage.yaml"
    usage.write_text(f"{group}:\n  requests.nvidia.com/gpu: 31\n  requests.nvidia.com/gpu.A100: 15\n")
    code, out = run("eval", str(WORKLOADS / "tfjob.yaml"), "--policy", str(EXAMPLES), "--usage", str(usage))
    assert gpus != "0" and code == 1 and out.startswith("DENIED")


def test_eval_update_charges_the_delta(tmp_path: Path) -> None:
    import yaml

    old = yaml.safe_load((WORKLOADS / "deployment.yaml").read_text())
    new = yaml.safe_load((WORKLOADS / "deployment.yaml").read_text())
    new["spec"]["replicas"] = old["spec"]["replicas"] + 1
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    (tmp_path / "new.yaml").write_text(yaml.safe_dump(new))
    code, out = run("eval", str(tmp_path / "new.yaml"), "--old", str(tmp_path / "old.yaml"),
                    "--policy", str(EXAMPLES), "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["operation"] == "UPDATE"
    assert data["delta"]["pods"] == "1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "missing.yaml", "--policy", str(EXAMPLES)], "cannot read missing.yaml"),
        (["eval", "{bad", "--policy", "/nonexistent"], "no such file or directory"),
    ],
)
def test_input_errors_exit_two_without_traceback(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(*argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_bad_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "w.yaml"
    bad.write_text("kind: Deployment\nmetadata: [\n")
    code, _ = run("eval", str(bad), "--policy", str(EXAMPLES))
    err = capsys.readouterr().err
    assert code == 2 and "w.yaml:" in err and "not valid YAML" in err


def test_usage_error_exits_two(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run("eval")
    assert code == 2 and "usage:" in capsys.readouterr().err


def test_fmt_check_diff_and_write(tmp_path: Path) -> None:
    policy = tmp_path / "p.quota"
    policy.write_text("group a {\n      limits.cpu   1   # c\n}\n")
    code, out = run("fmt", "--check", str(tmp_path))
    assert code == 1 and "would reformat" in out
    code, out = run("fmt", "--diff", str(tmp_path))
    assert code == 1 and out.startswith("---") and "+  limits.cpu  1  # c" in out
    assert policy.read_text() == "group a {\n      limits.cpu   1   # c\n}\n"
    code, _ = run("fmt", str(tmp_path))
    assert code == 0 and policy.read_text() == "group a {\n  limits.cpu  1  # c\n}\n"
    assert run("fmt", "--check", str(tmp_path))[0] == 0


def test_shipped_policies_are_formatted(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    assert run("fmt", "--check", str(tmp_path))[0] == 0


def test_tree_text_and_json(tmp_path: Path) -> None:
    policy = tmp_path / "p.quota"
    policy.write_text("group root {\n  limits.cpu 10\n}\ngroup a in root {\n  limits.cpu 4\n}\n")
    usage = tmp_path / "u.json"
    usage.write_text('{"root": {"limits.cpu": "1500m"}, "a": {"limits.cpu": "3"}}')
    code, out = run("tree", "--policy", str(tmp_path), "--usage", str(usage), "--format", "json")
    assert code == 0
    (root,) = json.loads(out)
    # free = hard 10 − carved 4 − used 1.5 = 4.5; subtree = own 1.5 + a's 3 = 4.5
    assert root["limits"] == [{"key": "limits.cpu", "hard": "10", "carved": "4", "used": "1500m",
                               "subtree": "4500m", "free": "4500m"}]
    assert root["children"][0]["name"] == "a"
    assert root["children"][0]["limits"][0]["subtree"] == "3"  # a leaf's subtree is its own usage
    code, out = run("tree", "--policy", str(tmp_path), "--usage", str(usage))
    assert code == 0 and "└── a" in out
    assert "used   1500m  subtree   4500m  free   4500m" in out
    assert "used       3  free       1" in out  # a leaf shows no subtree column


def test_extensions_add_verbs_through_the_public_table() -> None:
    from quotalang.cli import EXIT_FINDINGS, Verbs, build_parser

    def hello(args: Any, out: Any) -> int:
        out.write(f"hello {args.who} as {args.format}\n")
        return EXIT_FINDINGS

    def extend(verbs: Verbs) -> None:
        verbs.add("hello", "say hello", hello).add_argument("who")

    parser = build_parser(extend)
    assert parser.parse_args(["lint", "x"]).paths == ["x"]  # the core verbs are all there
    out = io.StringIO()
    assert main(["hello", "you", "--format", "json"], out=out, extensions=(extend,)) == EXIT_FINDINGS
    assert out.getvalue() == "hello you as json\n"
    assert main(["hello", "you"], out=io.StringIO()) == 2  # unknown without the extension: a usage error


# What the [server] extra installs (and what those pull in): absent from a base install.
SERVER_ONLY = ("starlette", "uvicorn", "kubernetes", "urllib3", "cryptography", "prometheus_client", "jinja2",
               "httptools", "uvloop")


def _without_server_extra(call: str) -> subprocess.CompletedProcess[str]:
    """Run `call` through the console script with every server-only module made unimportable."""
    code = (
        "import sys\n"
        f"for name in {SERVER_ONLY!r}: sys.modules[name] = None\n"
        "from quotalang.server.cli import main\n"
        f"sys.exit({call})\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)


def test_core_verbs_of_the_console_script_need_no_server_dependency() -> None:
    """`quotalang lint` must run in an install without the [server] extra."""
    done = _without_server_extra(f"main(['lint', {str(EXAMPLES)!r}])")
    assert done.returncode == 0, done.stderr
    assert "ok: no findings" in done.stdout


@pytest.mark.parametrize("argv", [["serve", "--policy", "examples/policies"],
                                  ["manifests", "--policy", "examples/policies", "--namespace", "q",
                                   "--image", "registry.example/quotalang:test"]])
def test_server_verbs_without_the_extra_say_how_to_install_it(argv: list[str]) -> None:
    done = _without_server_extra(f"main({argv!r})")
    assert done.returncode == 2, done.stderr
    assert "needs the server extra" in done.stderr and "pip install 'quotalang[server]'" in done.stderr
    assert "Traceback" not in done.stderr


# ---- issue 13: invalid objects exit 2 with one line; LimitRanges without a cluster

def _strip_limits(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "resources" and isinstance(value, dict):
                value.pop("limits", None)
            _strip_limits(value)
    elif isinstance(node, list):
        for value in node:
            _strip_limits(value)


LIMIT_RANGE = """\
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: ai}
spec:
  limits:
  - type: Container
    default: {cpu: "1", memory: 1Gi}
"""


# The example workloads that exist to show something else: no group to charge, or over quota anyway.
NOT_CHARGED_BY_LIMITS = {"deployment-unknown-group.yaml", "deployment-unlabelled.yaml", "tfjob-too-big.yaml"}


@pytest.mark.parametrize("workload", sorted(p.name for p in WORKLOADS.glob("*.yaml")
                                            if p.name not in NOT_CHARGED_BY_LIMITS))
def test_eval_without_limits_must_specify_and_a_limit_range_default_admits(tmp_path: Path, workload: str) -> None:
    """Must show: each example workload without container limits, in a group that limits limits.cpu, is denied
    with the must-specify message; with --limit-range giving a default it is admitted and charged the default."""
    import yaml

    from quotalang.cli import load_policy
    from quotalang.evaluator import resolve_group

    docs = [d for d in yaml.safe_load_all((WORKLOADS / workload).read_text()) if d]
    policy = load_policy([str(EXAMPLES)])
    group, _ = resolve_group(policy, docs[0])
    assert group is not None and "limits.cpu" in policy.groups[group].hard, f"{workload}: pick a case that applies"
    for doc in docs:
        _strip_limits(doc)
    stripped = tmp_path / workload
    stripped.write_text(yaml.safe_dump_all(docs))
    code, out = run("eval", str(stripped), "--policy", str(EXAMPLES))
    assert "must specify limits.cpu for: container " in out and "or add a LimitRange default" in out
    if policy.groups[group].mode == "enforce":
        assert code == 1 and "DENIED" in out
    else:  # warn and audit modes allow it, and say so
        assert code == 0 and "ALLOWED" in out
    (tmp_path / "lr.yaml").write_text(LIMIT_RANGE)
    code, out = run("eval", str(stripped), "--policy", str(EXAMPLES), "--limit-range", str(tmp_path / "lr.yaml"),
                    "--format", "json")
    assert code == 0, out
    result = json.loads(out)
    assert result["allowed"] and result["reason"] == "charged" and "limits.cpu" in result["usage"]


@pytest.mark.parametrize(("text", "expected"), [
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, labels: {biz.group.resource.quota: frank}}\n"
     "spec:\n  template:\n    spec:\n      containers:\n      - name: c\n        resources: {requests: {cpu: 1.5.5}}\n",
     "document 0 (Deployment d (apps/v1)): Deployment part pod: container c resources.requests.cpu"),
    ("metadata: {name: x}\nspec: {}\n", "document 0: no apiVersion or kind: not a Kubernetes object"),
    ("apiVersion: v1\nkind: Pod\n---\nkind: Pod\n", "document 1: no apiVersion: not a Kubernetes object"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: -2\n",
     "spec.replicas is -2: must be greater than or equal to 0"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n"
     "      containers: [{name: c, resources: {limits: lots}}]\n", "container c resources.limits is 'lots'"),
    # issue 25: a 4,400-digit number was "internal error: ValueError"; a cpu past the bounds is invalid
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: " + "9" * 4400 + "\n",
     "cannot read: Exceeds the limit (4300 digits) for integer string conversion"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n"
     "      containers: [{name: c, resources: {requests: {cpu: 1e5000}}}]\n", "is out of range"),
])
def test_eval_of_an_invalid_object_exits_2_with_one_line_naming_file_document_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: str
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    code, out = run("eval", str(path), "--policy", str(EXAMPLES))
    err = capsys.readouterr().err
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and expected in err, err
    assert "internal error" not in err and "Traceback" not in err


def test_eval_limit_range_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lr.yaml").write_text(LIMIT_RANGE.replace('cpu: "1"', 'cpu: "-1"'))
    code, _ = run("eval", str(WORKLOADS / "deployment.yaml"), "--policy", str(EXAMPLES),
                  "--limit-range", str(tmp_path / "lr.yaml"))
    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path / 'lr.yaml'}: LimitRange defaults: spec.limits[0].default.cpu is -1" in err


def test_tree_sums_per_cluster_snapshots_and_shows_each_share(tmp_path: Path) -> None:
    policy = tmp_path / "p.quota"
    policy.write_text("group root {\n  limits.cpu 10\n  cash limits.cpu 100h per week\n}\n"
                      "group a in root {\n  limits.cpu 4\n  cash limits.cpu 0h per week\n}\n")
    east, west = tmp_path / "east.yaml", tmp_path / "west.yaml"
    east.write_text('root: {limits.cpu: 1500m, cash: {limits.cpu: 10h}}\n')
    west.write_text('root: {limits.cpu: "2", cash: {limits.cpu: 2.5h}}\n')
    code, out = run("tree", "--policy", str(tmp_path), "--usage", f"east={east}", "--usage", f"west={west}",
                    "--format", "json")
    assert code == 0
    (root,) = json.loads(out)
    # used = 1.5 + 2 = 3.5; free = hard 10 − carved 4 − used 3.5 = 2.5
    assert root["limits"] == [{"key": "limits.cpu", "hard": "10", "carved": "4", "used": "3500m", "subtree": "3500m",
                               "free": "2500m", "clusters": {"east": "1500m", "west": "2"}}]
    assert root["cash"][0]["used"] == "12.5h"  # 10 h + 2.5 h
    code, out = run("tree", "--policy", str(tmp_path), "--usage", f"east={east}", "--usage", f"west={west}")
    assert code == 0
    assert "used   3500m  subtree   3500m  free   2500m  (east 1500m, west 2)" in out


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        (["East=u.yaml"], "'East' is not a cluster name"),
        (["a=u.yaml", "a=u.yaml"], "--usage a=... is given twice"),
        (["u.yaml", "a=u.yaml"], "not both: name every snapshot"),
        (["u.yaml", "u.yaml"], "--usage FILE is one snapshot"),
        (["a=missing.yaml"], "cannot read missing.yaml"),
    ],
    ids=["bad-name", "twice", "mixed", "two-plain", "missing-file"],
)
def test_tree_per_cluster_usage_errors_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], usage: list[str],
    message: str,
) -> None:
    (tmp_path / "p.quota").write_text("group root {\n  limits.cpu 10\n}\n")
    (tmp_path / "u.yaml").write_text("root: {limits.cpu: 1}\n")
    monkeypatch.chdir(tmp_path)
    args = [a for u in usage for a in ("--usage", u)]
    assert run("tree", "--policy", str(tmp_path), *args)[0] == 2
    assert message in capsys.readouterr().err


def test_lint_of_a_missing_path_is_a_usage_error_with_near_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26 #4: `lint nonexistent-dir` exited 1, as if the policy had findings."""
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.quota").write_text('import "quotalang:policies"\n')
    code, out = run("lint", str(tmp_path / "polices"))
    err = capsys.readouterr().err
    assert (code, out) == (2, "")
    assert f"no such file or directory: {tmp_path / 'polices'} (did you mean {tmp_path / 'policies'}?)" in err
    assert run("lint", str(tmp_path / "zzz"))[0] == 2
    assert capsys.readouterr().err.strip().endswith("zzz")  # nothing near: no suggestion


def test_tree_usage_naming_an_unknown_group_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 26 #4: usage of a group the policy lacks was silently ignored."""
    (tmp_path / "p.quota").write_text('import "quotalang:policies"\ngroup research {\n  pods 10\n}\n')
    (tmp_path / "usage.yaml").write_text("reserch:\n  pods: 4\nresearch:\n  pods: 1\n")
    code, _ = run("tree", "--policy", str(tmp_path), "--usage", str(tmp_path / "usage.yaml"))
    assert code == 2
    assert "--usage names groups the policy does not have: reserch (did you mean research?)" in (
        capsys.readouterr().err
    )
    (tmp_path / "usage.yaml").write_text("research:\n  pods: 1\n")
    assert run("tree", "--policy", str(tmp_path), "--usage", f"east={tmp_path / 'usage.yaml'}")[0] == 0
    (tmp_path / "west.yaml").write_text("nobody:\n  pods: 1\n")
    code, _ = run("tree", "--policy", str(tmp_path), "--usage", f"east={tmp_path / 'usage.yaml'}",
                  "--usage", f"west={tmp_path / 'west.yaml'}")
    assert code == 2 and "nobody" in capsys.readouterr().err
