"""Policies by GitOps: one `.quota` edit in a kustomize overlay reaches a running `serve` by hot reload.

1. `quotalang manifests --output-dir base`: the policy's files under
   base/policy/ and a configMapGenerator (no hash suffix) for the ConfigMap.
2. An overlay, as a GitOps repository holds it: `bases: [../base]` and a
   configMapGenerator (behavior: merge) over its own copy of root.quota.
3. `kubectl kustomize overlay` (kustomize as kubectl 1.20 bundles it), then
   `kubectl apply`; the test plays the kubelet and projects the ConfigMap
   into serve's policy folder as a ConfigMap volume is updated (a new
   timestamped folder, `..data` swapped to it, file links through it).
4. Edit one line of overlay/root.quota, build and apply again: the rendered
   objects differ only in that ConfigMap key, whose diff is the file's diff,
   and serve (never restarted) decides by the new limit.

Numbers by hand: team-a may use 4 cpu, then 6; a Deployment of 5 one-cpu pods
is denied, then allowed.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from quotalang.compiler import compile_policy
from quotalang.server.manifests import webhook_rules
from tests.e2e.conftest import require_kube
from tests.e2e.kube_cluster import ROOT, Cluster, Webhook, wait_until

NS = "quota-system"
ROOT_POLICY = """\
import "quotalang:policies/core.quota"

settings {
  group label  "quota.group"
}

group root {
  requests.cpu   20
}

group team-a in root {
  requests.cpu    4
}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster of this module's own: the install's webhook configuration is applied for real."""
    running = Cluster(require_kube(), tmp_path_factory.mktemp("gitops") / "cluster")
    try:
        running.start()
        yield running
    finally:
        running.stop()


def build(cluster: Cluster, overlay: Path) -> list[dict[str, Any]]:
    text = cluster.kubectl("kustomize", str(overlay)).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def project(cluster: Cluster, folder: Path) -> None:
    """What the kubelet does to a ConfigMap volume: a new folder, `..data` swapped to it atomically."""
    config = orjson.loads(cluster.kubectl("-n", NS, "get", "configmap", "quotalang-policy", "-o", "json").stdout)
    stamp = folder / f"..{time.monotonic_ns()}"
    stamp.mkdir()
    for name, text in config["data"].items():
        (stamp / name).write_text(text)
    link = folder / "..data_tmp"
    link.symlink_to(stamp.name)
    os.replace(link, folder / "..data")
    for name in config["data"]:
        if not (folder / name).is_symlink():
            (folder / name).symlink_to(f"..data/{name}")


def deployment(replicas: int) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "team-a", "labels": {"quota.group": "team-a"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                                           "resources": {"requests": {"cpu": "1"}}}]}}}}


def decision(cluster: Cluster) -> str:
    done = cluster.kubectl("create", "--dry-run=server", "-f", "-", stdin=orjson.dumps(deployment(5)).decode(),
                           check=False)
    return "denied" if "denied the request" in done.stderr else "allowed" if done.returncode == 0 else done.stderr


def test_a_quota_edit_in_an_overlay_reaches_serve_by_hot_reload(cluster: Cluster, tmp_path: Path) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "root.quota").write_text(ROOT_POLICY)
    base, overlay = tmp_path / "gitops" / "base", tmp_path / "gitops" / "overlay"
    done = subprocess.run([sys.executable, "-m", "quotalang.server.cli", "manifests", "--policy", str(policy),
                           "--namespace", NS, "--image", "registry.example/quotalang:0.1.0", "--kube-version", "1.20",
                           "--failure-policy", "Ignore", "--output-dir", str(base)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert (base / "policy" / "root.quota").read_text() == ROOT_POLICY
    overlay.mkdir()
    shutil.copy(policy / "root.quota", overlay / "root.quota")
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "bases": ["../base"],
        "configMapGenerator": [{"name": "quotalang-policy", "namespace": NS, "behavior": "merge",
                                "files": ["root.quota"]}]}))

    before = build(cluster, overlay)
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(before))
    cluster.ensure_namespace("team-a")
    mount = tmp_path / "mount"
    mount.mkdir()
    project(cluster, mount)
    hook = Webhook(cluster, mount, tmp_path / "serve", ("--reload-interval", "0.5"))
    hook.start()
    try:
        hook.register(webhook_rules(compile_policy(str(policy))))
        wait_until(lambda: decision(cluster) == "denied", "5 cpu denied under team-a's 4", 30)
        pid = hook.process.pid if hook.process else None

        # The pull request: one line of one .quota file.
        edited = ROOT_POLICY.replace("group team-a in root {\n  requests.cpu    4", "group team-a in root {\n"
                                     "  requests.cpu    6")
        assert edited != ROOT_POLICY
        (overlay / "root.quota").write_text(edited)
        after = build(cluster, overlay)

        def key(doc: dict[str, Any]) -> tuple[str, str]:
            return doc["kind"], doc["metadata"]["name"]

        changed = [key(a) for a, b in zip(after, before, strict=True) if a != b]
        assert changed == [("ConfigMap", "quotalang-policy")]
        old = next(d for d in before if key(d) == changed[0])["data"]
        new = next(d for d in after if key(d) == changed[0])["data"]
        assert [k for k in new if new[k] != old.get(k)] == ["root.quota"] and sorted(new) == sorted(old)
        file_diff = list(difflib.unified_diff(ROOT_POLICY.splitlines(), edited.splitlines(), lineterm=""))
        assert list(difflib.unified_diff(old["root.quota"].splitlines(), new["root.quota"].splitlines(),
                                         lineterm="")) == file_diff
        assert [line for line in file_diff if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
            "-  requests.cpu    4", "+  requests.cpu    6"]

        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(after))
        project(cluster, mount)
        wait_until(lambda: decision(cluster) == "allowed", "5 cpu allowed under team-a's 6 after the reload", 30)
        assert hook.process is not None and hook.process.pid == pid and hook.process.poll() is None
        events = [orjson.loads(line) for line in hook.log.read_text().splitlines() if line.startswith("{")]
        loaded = [e for e in events if e.get("message") == "policy loaded" or e.get("msg") == "policy loaded"]
        # One reload (the start is not logged as one): from the first policy to the edited one.
        assert len(loaded) == 1 and loaded[0]["previous"] not in (None, loaded[0]["checksum"]), loaded
    finally:
        hook.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", "quotalang-e2e", "--ignore-not-found")
