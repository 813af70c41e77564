"""`quotalang serve --kubeconfig`: usage and cash from the cluster, against a real apiserver.

The webhook watches the cluster (its controller) and the apiserver calls it
over TLS. No kube-controller-manager runs here, so a Deployment makes no
ReplicaSets or pods: what is charged is exactly what the tests create. By
hand: group ctl-a may request 4 cpu; a `web` pod requests 1 cpu; the cash
test's pod holds 2 cpu, so it spends 2 cpu-seconds per second.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quotalang.controller.cash import period_start
from quotalang.controller.kube.api import KubeApi
from tests.e2e.conftest import StartWebhook, wait_for_webhook
from tests.e2e.kube_cluster import Cluster, Webhook, wait_until

NAMESPACE = "e2e-ctl"
POLICY = """\
import "quotalang:policies"

settings {
  group label  "quota.group"
}

group ctl-root {
  requests.cpu  20
  cash requests.cpu  1000h per week
}

group ctl-a in ctl-root {
  requests.cpu  4
  cash requests.cpu  100h per week
}
"""
# A second webhook that rejects whatever carries `reject: "yes"`: a later step that turns down an
# object quotalang has already admitted (the apiserver calls validating webhooks in parallel).
REJECTING_POLICY = """\
settings {
  group label  "quota.group"
}

group ctl-a {
  requests.cpu  0
}

kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
}
"""


def deployment(name: str, replicas: int, *, reject: bool = False, group: str = "ctl-a") -> dict[str, Any]:
    labels = {"quota.group": group, **({"reject": "yes"} if reject else {})}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/app:1",
                                         "resources": {"requests": {"cpu": "1"}}}]},
            },
        },
    }


def probe() -> dict[str, Any]:
    return deployment("probe", 1, group="no-such-group")


def cpu_used(hook: Webhook) -> str:
    return next(i["used"] for i in hook.group("ctl-a")["limits"] if i["key"] == "requests.cpu")


def cpu_reserved(hook: Webhook) -> str:
    return next(i["reserved"] for i in hook.group("ctl-a")["limits"] if i["key"] == "requests.cpu")


def cpu_seconds(hook: Webhook) -> float:
    """Cash spent, from /metrics (unit-seconds, unrounded; /api/groups rounds to 0.01 h)."""
    with hook.http(api=True) as client:
        text = client.get("/metrics").text
    line = next(line for line in text.splitlines()
                if line.startswith('quotalang_cash_used_seconds{') and 'group="ctl-a"' in line)
    return float(line.rsplit(" ", 1)[1])


@pytest.fixture
def namespace(cluster: Cluster) -> Any:
    cluster.ensure_namespace(NAMESPACE)
    yield NAMESPACE
    cluster.kubectl("delete", "deployments", "--all", "-n", NAMESPACE, "--wait=false")
    # No kubelet here to confirm a pod's end: without force a deleted pod stays (and is charged) 30 s.
    cluster.kubectl("delete", "pods", "--all", "-n", NAMESPACE, "--grace-period=0", "--force")


def serve(start_webhook: StartWebhook, cluster: Cluster, *args: str) -> Webhook:
    return start_webhook(POLICY, "--kubeconfig", str(cluster.kubeconfig), *args, probe=probe())


def test_usage_comes_from_the_cluster_and_a_deletion_frees_it(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    cluster.create(deployment("before", 2))  # no webhook yet: admitted by nobody, seen by the LIST
    hook = serve(start_webhook, cluster)
    assert cpu_used(hook) == "2"
    cluster.create(deployment("web", 2))  # 2 + 2 = 4 of 4
    wait_until(lambda: cpu_reserved(hook) == "0", "the watch to show web (its reservation folds)", 10)
    assert cpu_used(hook) == "4"
    denied = cluster.create(deployment("more", 1), check=False)
    assert "used 4 of 4, 0 free" in denied.stderr
    cluster.kubectl("delete", "deployment", "before", "-n", namespace)
    wait_until(lambda: cpu_used(hook) == "2", "the deletion to free 2 cpu", 10)
    cluster.create(deployment("more", 1))  # 2 + 1 = 3 of 4
    assert cpu_used(hook) == "3"


def test_a_restart_rebuilds_the_same_usage_from_the_cluster(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    hook = serve(start_webhook, cluster)
    cluster.create(deployment("one", 1))
    cluster.create(deployment("two", 2))
    wait_until(lambda: cpu_reserved(hook) == "0", "both to be observed", 10)
    before = hook.group("ctl-a")
    hook.stop()
    hook.start()  # same policy, same cluster; /readyz only after the first full sync
    after = hook.group("ctl-a")
    assert after["limits"] == before["limits"]
    assert (after["objects"], cpu_used(hook)) == (2, "3")
    denied = cluster.create(deployment("three", 2), check=False)  # 3 + 2 > 4, decided from rebuilt usage
    assert "used 3 of 4, 1 free" in denied.stderr


def test_a_reservation_expires_when_a_later_webhook_rejects_the_object(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str, tmp_path: Path
) -> None:
    hook = serve(start_webhook, cluster, "--reservation-ttl", "3")
    folder = tmp_path / "rejecting"
    folder.mkdir()
    (folder / "reject.quota").write_text(REJECTING_POLICY)
    rejecting = start_webhook(folder, register=False)
    rules = [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["deployments"]}]
    rejecting.register(rules, name="quotalang-e2e-rejecting", object_selector={"matchLabels": {"reject": "yes"}})
    try:
        wait_for_webhook(cluster, {**deployment("probe-reject", 1, reject=True)})
        doomed = cluster.create(deployment("doomed", 3, reject=True), check=False)
        assert doomed.returncode != 0 and "group ctl-a" in doomed.stderr
        # quotalang admitted it (3 cpu reserved); the object never persisted.
        assert cpu_reserved(hook) == "3"
        assert "used 3 of 4, 1 free" in cluster.create(deployment("blocked", 2), check=False).stderr
        wait_until(lambda: cpu_reserved(hook) == "0", "the reservation to expire (3 s)", 15)
        cluster.create(deployment("fits", 2))  # 0 + 2 of 4: the quota came back
        assert cpu_used(hook) == "2"
    finally:
        cluster.kubectl("delete", "validatingwebhookconfiguration", "quotalang-e2e-rejecting", "--ignore-not-found")


def _pod(name: str, node: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"quota.group": "ctl-a"}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.example/app:1",
                                                       "resources": {"requests": {"cpu": "2"}}}]}}


def test_cash_accrues_from_scheduled_pods_and_survives_a_restart(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str, tmp_path: Path
) -> None:
    state = tmp_path / "cash.json"
    api = KubeApi.from_config(str(cluster.kubeconfig))
    try:
        api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods", body=_pod("trainer", "node-1"))
        # What the scheduler and the kubelet would write: scheduled 30 minutes ago, running. The
        # webhook starts after, as on a cluster where work was running before quotalang came.
        scheduled = int(time.time()) - 1800
        stamp = datetime.fromtimestamp(scheduled, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        api.request("PATCH", f"/api/v1/namespaces/{NAMESPACE}/pods/trainer/status",
                    body={"status": {"phase": "Running", "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp}]}},
                    content_type="application/merge-patch+json")
    finally:
        api.close()
    hook = serve(start_webhook, cluster, "--state", str(state), "--accrue-interval", "1")

    def expected(now: float) -> float:
        # 2 cpu from the later of (scheduled, this week's Monday 00:00 UTC) to now, in cpu-seconds.
        return 2 * (now - max(scheduled, period_start("week", now) or scheduled))

    wait_until(lambda: cpu_seconds(hook) > 0, "the first accrual", 15)
    first = cpu_seconds(hook)
    # About 3,600 cpu-seconds (2 cpu × 30 min); accrual runs every second, so at most ~2 s behind.
    assert expected(time.time() - 4) <= first <= expected(time.time())
    hook.stop()  # a graceful stop accrues and saves once more
    assert '"lastAccrual"' in state.read_text()
    time.sleep(2)  # the pod keeps running while nobody watches: that time must be accrued too
    hook.start()
    wait_until(lambda: cpu_seconds(hook) > first + 4, "accrual after the restart", 15)
    again = cpu_seconds(hook)
    # Nothing lost, nothing counted twice: had the restart re-accrued from the scheduled time on top
    # of the saved cash, it would read about twice as much.
    assert expected(time.time() - 4) <= again <= expected(time.time())


def test_kubectl_scale_finds_the_workload_the_watch_saw(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    cluster.create(deployment("seen", 1))  # before the webhook: only the controller's LIST knows it
    hook = serve(start_webhook, cluster)
    cluster.kubectl("scale", "deployment", "seen", "-n", namespace, "--replicas=4")  # 4 × 1 cpu = 4 of 4
    wait_until(lambda: cpu_used(hook) == "4" and cpu_reserved(hook) == "0", "the scaled Deployment observed", 10)
    denied = cluster.kubectl("scale", "deployment", "seen", "-n", namespace, "--replicas=5", check=False)
    # The Scale carries no template: the parent came from the watch's index. 4 used, 1 more pod of 1 cpu.
    assert "requests.cpu: requested 1 (+1 to 5 × pod 1), used 4 of 4, 0 free" in denied.stderr


def test_scaling_an_owned_replicaset_is_not_charged_twice(
    cluster: Cluster, start_webhook: StartWebhook, namespace: str
) -> None:
    cluster.create(deployment("owner", 2))  # before the webhook: 2 pods × 1 cpu, seen by the LIST
    uid = cluster.kubectl("get", "deployment", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}").stdout
    replicaset = deployment("owner-rs", 2)
    replicaset["kind"] = "ReplicaSet"
    replicaset["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "owner",
                                                  "uid": uid, "controller": True}]
    cluster.create(replicaset)  # what the Deployment controller would make: its owner already paid
    hook = serve(start_webhook, cluster)
    # The watch keeps no body of an owned object, and this replica admitted none: the /scale parent
    # comes from a live GET, is seen to be owned and is allowed uncharged. Without the GET the scale
    # would be denied ("cannot find the workload ... being scaled").
    cluster.kubectl("scale", "replicaset", "owner-rs", "-n", namespace, "--replicas=3")
    assert cpu_used(hook) == "2"  # the Deployment's 2 pods × 1 cpu; the ReplicaSet adds nothing
    cluster.kubectl("delete", "replicaset", "owner-rs", "-n", namespace)
