"""RBAC for reclaim (issue 29): get + patch where a kind rule names a suspend path, delete only with
`reclaim by delete`, create Events; the chart renders the same rules as the manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from quotalang.server.manifests import Options, manifests
from quotalang.server.manifests.chart import chart_values
from tests.chart_render import render
from tests.server.test_chart import IMAGE, NS

POLICY = """\
settings {
  reclaim by delete
}
group root {
  requests.cpu 8
}
kind batch/v1 Job {
  suspend spec.suspend
  creates v1 Pod
  pods {
    template spec.template
  }
}
kind apps/v1 Deployment {
  creates apps/v1 ReplicaSet
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def cluster_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return next(d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "quotalang")["rules"]


def test_delete_is_granted_only_with_reclaim_by_delete_and_the_chart_agrees(tmp_path: Path) -> None:
    (tmp_path / "p.quota").write_text(POLICY)
    rules = cluster_rules(manifests([str(tmp_path)], NS, Options(IMAGE)))
    assert {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]} in rules
    assert {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["delete"]} in rules
    assert {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]} in rules
    assert cluster_rules(render(chart_values([str(tmp_path)], Options(IMAGE)), NS)) == rules
    # Without the setting: the Job is still patched, nothing is deleted.
    (tmp_path / "p.quota").write_text(POLICY.replace("  reclaim by delete\n", ""))
    rules = cluster_rules(manifests([str(tmp_path)], NS, Options(IMAGE)))
    assert not any("delete" in r["verbs"] and r["apiGroups"] == ["apps"] for r in rules)
    assert {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "patch"]} in rules
    assert cluster_rules(render(chart_values([str(tmp_path)], Options(IMAGE)), NS)) == rules
