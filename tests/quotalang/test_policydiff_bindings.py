"""`quotalang diff` of namespace bindings: patterns added / removed per group, a default moved, and with a
usage snapshot the current workloads whose namespace would no longer be bound to their group."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotalang.errors import InputError
from quotalang.evaluator import Snapshot
from tests.quotalang.test_policydiff import policy, run, run_json

OLD = """\
group ai {
  requests.cpu 100
}

group llm in ai {
  namespaces "llm-dev", "shared"
  default namespaces "llm-*"
  requests.cpu 40
}

group vision in ai {
  mode warn
  namespaces "vision-dev"
  requests.cpu 40
}
"""

# llm loses "shared" and its default "llm-*" moves to vision; vision gains "shared"; llm gains "llm-prod", "gpu-lab"
NEW = """\
group ai {
  requests.cpu 100
}

group llm in ai {
  namespaces "llm-dev", "llm-prod", "gpu-lab"
  requests.cpu 40
}

group vision in ai {
  mode warn
  namespaces "vision-dev", "shared"
  default namespaces "llm-*"
  requests.cpu 40
}
"""

USAGE = """\
llm:
  requests.cpu: 6
  workloads:
  - {kind: Deployment, namespace: shared, name: web}
  - {kind: Deployment, namespace: llm-dev, name: train}
  - {kind: Job, namespace: scratch, name: tmp, cluster: eu-1}
vision:
  requests.cpu: 1
  workloads:
  - {kind: Deployment, namespace: gpu-lab, name: peek}
"""


def test_binding_changes_are_listed_per_group(tmp_path: Path) -> None:
    code, report = run_json(policy(tmp_path, "old", OLD), policy(tmp_path, "new", NEW))
    assert code == 0  # no usage given: nothing is stranded
    assert report["bindings"] == [
        {"group": "llm", "pattern": "llm-prod", "change": "added", "default": False, "was": None},
        {"group": "llm", "pattern": "gpu-lab", "change": "added", "default": False, "was": None},
        {"group": "llm", "pattern": "shared", "change": "removed", "default": False, "was": None},
        {"group": "llm", "pattern": "llm-*", "change": "removed", "default": False, "was": None},
        {"group": "vision", "pattern": "shared", "change": "added", "default": False, "was": None},
        {"group": "vision", "pattern": "llm-*", "change": "added", "default": False, "was": None},
        {"group": "vision", "pattern": "llm-*", "change": "moved", "default": True, "was": "llm"},
    ]
    assert report["rebound"] == []


def test_with_usage_the_workloads_it_would_refuse(tmp_path: Path) -> None:
    """By hand: llm's web in shared is refused (shared is vision's now; llm enforces); train in llm-dev stays;
    tmp in eu-1/scratch was already charged from a namespace no group binds: outside quota, not a denial;
    vision's peek in gpu-lab (llm's now; not matched by vision's llm-*) is only warned, vision being in warn
    mode."""
    usage = tmp_path / "usage.yaml"
    usage.write_text(USAGE)
    code, out = run(policy(tmp_path, "old", OLD), policy(tmp_path, "new", NEW), "--usage", str(usage))
    assert code == 1
    assert out.splitlines()[1:] == [
        "namespaces:",
        '  ai/llm: added namespaces "llm-prod"',
        '  ai/llm: added namespaces "gpu-lab"',
        '  ai/llm: removed namespaces "shared"',
        '  ai/llm: removed namespaces "llm-*"',
        '  ai/vision: added namespaces "shared"',
        '  ai/vision: added namespaces "llm-*"',
        '  default namespaces "llm-*": default moved from ai/llm to ai/vision',
        "workloads their namespace would no longer bind to their group:",
        "  Deployment shared/web in group llm: denied (namespace shared is bound to ai/vision, not ai/llm)",
        "  Job eu-1/scratch/tmp in group llm: outside quota (namespace scratch is bound to no group)",
        "  Deployment gpu-lab/peek in group vision: warned (namespace gpu-lab is bound to ai/llm, not ai/vision)",
        "problems:",
        "  Deployment shared/web in group llm would be denied: namespace shared is bound to ai/vision, not ai/llm",
        "1 problem(s)",
    ]


def test_unbound_namespaces_deny_makes_an_unbound_one_a_denial(tmp_path: Path) -> None:
    usage = tmp_path / "usage.yaml"
    usage.write_text(USAGE)
    strict = "settings {\n  unbound namespaces deny\n}\n\n" + NEW
    code, report = run_json(policy(tmp_path, "old", OLD), policy(tmp_path, "new", strict), "--usage", str(usage))
    assert code == 1
    assert [(r["name"], r["now"]) for r in report["rebound"]] == [
        ("web", "denied"), ("tmp", "denied"), ("peek", "warned")]


def test_a_policy_without_bindings_strands_no_workload(tmp_path: Path) -> None:
    usage = tmp_path / "usage.yaml"
    usage.write_text(USAGE)
    unbound = "\n".join(line for line in OLD.splitlines() if "namespaces" not in line) + "\n"
    code, report = run_json(policy(tmp_path, "old", OLD), policy(tmp_path, "new", unbound), "--usage", str(usage))
    assert code == 0 and report["rebound"] == []
    assert [(b["group"], b["pattern"], b["change"], b["default"]) for b in report["bindings"]] == [
        ("llm", "llm-dev", "removed", False), ("llm", "shared", "removed", False),
        ("llm", "llm-*", "removed", False), ("llm", "llm-*", "removed", True),
        ("vision", "vision-dev", "removed", False)]


@pytest.mark.parametrize("workloads", ["web", ["web"], [{"namespace": ""}], [{"namespace": 3}]])
def test_malformed_workload_rows_are_refused(workloads: object) -> None:
    with pytest.raises(InputError, match="workloads"):
        Snapshot.parse({"llm": {"workloads": workloads}})
