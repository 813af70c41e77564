"""Reclaim through a real kube-apiserver (issue 29 item 3): `quotalang serve --kubeconfig` (SQLite, its controller),
and in a fleet's member (the last test: the apiserver as member `west`, the hub's ledger in memory).

kube-apiserver 1.20 serves batch/v1 Job without `spec.suspend` (pruned), so
the suspendable kind here is a JobSet, its CRD installed with
preserve-unknown-fields (the shipped rule: `suspend spec.suspend`,
replicas × parallelism pods of the template). No controllers run: what is
charged is what the objects say.

By hand, cpu: root 8 ⊃ ai 8 (borrows nothing) ⊃ vision 4 (lend 4), nlp 4
(borrow 4). nlp's JobSet big (6 cpu) borrows 2 at ai, small (2 cpu) 2 more:
T(nlp) = 4 − 8 = −4, T(ai) = 0 + min(4, 4) − 4 = 0. vision's 3 cpu then make
T(vision) 1, T(ai) = 1 − 4 = −3: they fit only with big's 6 back (T(nlp) 2,
share 0, T(ai) 1), and small's 2 alone are not enough (T(ai) = 1 − 2 = −1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quotalang.compiler import compile_sources
from quotalang.controller.kube.api import KubeApi
from quotalang.controller.ledger.base import ObjectKey
from quotalang.controller.ledger.memory import MemoryLedger
from quotalang.controller.runner import Controller
from quotalang.loader import load_text
from tests.asks import admit
from tests.e2e.conftest import StartWebhook
from tests.e2e.kube_cluster import Cluster, Webhook, wait_until
from tests.e2e.test_webhook import TFJOB_CRD
from tests.quotalang.test_reclaim_choice import POLICY as CHOICE_POLICY
from tests.server.test_manifests import fleet_part

NAMESPACE = "e2e-reclaim"
# test_reclaim_choice's tree in cpu, with the shipped library and the e2e group label
POLICY = (CHOICE_POLICY.replace("requests.nvidia.com/gpu", "requests.cpu")
          .replace('group label "g"', 'group label "quota.group"')
          .replace('import "quotalang:policies/core.quota"', 'import "quotalang:policies"'))
# TFJob's CRD shape (preserve-unknown-fields), as a JobSet
JOBSET_CRD: dict[str, Any] = json.loads(
    json.dumps(TFJOB_CRD).replace("tfjobs.kubeflow.org", "jobsets.jobset.x-k8s.io")
    .replace("kubeflow.org", "jobset.x-k8s.io").replace("TFJob", "JobSet").replace("tfjob", "jobset")
    .replace('"v1"', '"v1alpha2"'))


def template(cpu: int, **spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "c", "image": "registry.example/train:1",
                                     "resources": {"requests": {"cpu": str(cpu)}}}], **spec}}


def jobset(name: str, group: str, cpu: int) -> dict[str, Any]:
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"quota.group": group}},
            "spec": {"replicatedJobs": [{"name": "w", "replicas": 1,
                                         "template": {"spec": {"parallelism": 1, "template": template(cpu)}}}]}}


def deployment(name: str, group: str, cpu: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"quota.group": group}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, **template(cpu, **spec)}}}


def cpu_used(hook: Webhook, group: str) -> str:
    return str(next(i["used"] for i in hook.group(group)["limits"] if i["key"] == "requests.cpu"))


@pytest.fixture
def hook(cluster: Cluster, start_webhook: StartWebhook) -> Any:
    cluster.apply(JOBSET_CRD)
    wait_until(lambda: cluster.kubectl("get", "jobsets", "-A", check=False).returncode == 0, "the JobSet CRD", 30)
    cluster.ensure_namespace(NAMESPACE)
    yield start_webhook(POLICY, "--kubeconfig", str(cluster.kubeconfig),
                        probe=deployment("probe", "no-such-group", 1))
    for kind in ("jobsets", "deployments"):
        cluster.kubectl("delete", kind, "--all", "-n", NAMESPACE, "--wait=false")


def test_a_lender_is_admitted_while_a_suspendable_borrower_is_suspended(cluster: Cluster, hook: Webhook) -> None:
    cluster.create(jobset("big", "nlp", 6))
    cluster.create(jobset("small", "nlp", 2))
    wait_until(lambda: cpu_used(hook, "nlp") == "8", "nlp's 8 cpu observed", 30)
    created = cluster.create(jobset("mine", "vision", 3))
    assert "reclaims e2e-reclaim/big (2 of requests.cpu borrowed by root/ai/nlp)" in created.stderr

    def suspended() -> bool:
        out = cluster.kubectl("get", "jobset", "big", "-n", NAMESPACE, "-o", "jsonpath={.spec.suspend}").stdout
        return out == "true"

    wait_until(suspended, "big suspended by the controller", 30)
    small = cluster.kubectl("get", "jobset", "small", "-n", NAMESPACE, "-o", "jsonpath={.spec.suspend}").stdout
    assert small == ""  # the fewest: small was not touched
    events = json.loads(cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    mine = [e for e in events if e["involvedObject"]["name"] == "big" and e["reason"] == "QuotaReclaimed"]
    assert len(mine) == 1 and mine[0]["involvedObject"]["kind"] == "JobSet"
    # The watch sees big suspended: a suspended JobSet is charged nothing, nlp keeps small's 2.
    wait_until(lambda: cpu_used(hook, "nlp") == "2", "big's 6 cpu released", 30)
    with hook.http(api=True) as client:
        metrics = client.get("/metrics").text
    assert 'quotalang_reclaims_total{group="nlp",outcome="suspended"} 1.0' in metrics


def test_a_non_reclaimable_borrower_is_never_admitted_past_its_hard(cluster: Cluster, hook: Webhook) -> None:
    # 5 cpu in nlp (hard 4): 1 beyond. A Deployment of system-cluster-critical pods (2000000000) cannot be
    # given back; within its hard (4) the same is admitted.
    refused = cluster.create(deployment("critical", "nlp", 5, priorityClassName="system-cluster-critical"),
                             check=False)
    assert refused.returncode != 0
    assert "only reclaimable workloads may borrow: priority 2000000000 is not below 100" in refused.stderr
    assert cluster.create(deployment("critical", "nlp", 4, priorityClassName="system-cluster-critical"),
                          check=False).returncode == 0
    # The cluster's own classes, as the controller's watch reads them: e2e-high (1000) may not borrow,
    # e2e-batch (10) may (a Deployment: deleted only with `reclaim by delete`, so it borrows, is never reclaimed).
    for name, value in (("e2e-high", 1000), ("e2e-batch", 10)):
        cluster.apply({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                       "value": value})
    high = deployment("high", "nlp", 1, priorityClassName="e2e-high")  # 4 + 1: beyond nlp's hard

    def refused_as_1000() -> bool:
        answer = cluster.create(high, check=False)
        return answer.returncode != 0 and "priority 1000 is not below 100" in answer.stderr

    wait_until(refused_as_1000, "e2e-high resolved to 1000", 30)
    batch = cluster.create(deployment("batch", "nlp", 1, priorityClassName="e2e-batch"), check=False)
    assert batch.returncode == 0 and "borrowed 1 of requests.cpu from root/ai" in batch.stderr
    cluster.kubectl("delete", "priorityclass", "e2e-high", "e2e-batch")


def test_a_lender_is_denied_naming_the_borrowers_when_nothing_can_be_reclaimed(cluster: Cluster,
                                                                                hook: Webhook) -> None:
    # nlp's borrowers are Deployments (priority 0: they may borrow, but only `reclaim by delete` would let a
    # lender delete them): vision's 3 cpu are denied, naming them. T(ai) = 1 − 4 = −3 → 3 short at ai.
    cluster.create(deployment("dep-a", "nlp", 6))
    cluster.create(deployment("dep-b", "nlp", 2))
    wait_until(lambda: cpu_used(hook, "nlp") == "8", "nlp's 8 cpu observed", 30)
    refused = cluster.create(jobset("mine", "vision", 3), check=False)
    assert refused.returncode != 0
    assert ("3 short at root/ai, which may borrow 0; borrowed there by e2e-reclaim/dep-a (2, "
            "root/ai/nlp, deletable with `reclaim by delete`)") in refused.stderr


def _as_member(cluster: Cluster, folder: Path) -> KubeApi:
    """A client acting as the hub's ServiceAccount in member `west`, with only the RBAC `manifests --only west`
    grants it (its ServiceAccount, ClusterRole and binding applied; not its webhook, which would call no hub)."""
    docs = fleet_part(cluster.authority.cert, "west")
    for doc in docs:
        if doc["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
            cluster.apply(doc)
    return KubeApi.from_config(str(cluster.kubeconfig_as(folder / "west.kubeconfig", "q", "quotalang")))


def test_a_borrower_recorded_in_a_member_is_suspended_in_that_member(cluster: Cluster, tmp_path: Path) -> None:
    # The module's story in a fleet: big (6) and small (2) borrow in member west, vision's 3 are asked in
    # member east and name big. Every member's Controller reclaims through its own client what is recorded
    # in its cluster: east's (here the same apiserver, so a namesake it would find) leaves big alone; west's,
    # acting as the hub's ServiceAccount with the member RBAC, suspends it there, with its Event.
    cluster.apply(JOBSET_CRD)
    wait_until(lambda: cluster.kubectl("get", "jobsets", "-A", check=False).returncode == 0, "the JobSet CRD", 30)
    cluster.ensure_namespace(NAMESPACE)
    policy = compile_sources(load_text(POLICY, "reclaim.quota"))
    ledger = MemoryLedger()
    uids = {}
    try:
        for name, cpu in (("big", 6), ("small", 2)):
            cluster.create(jobset(name, "nlp", cpu))
            body = json.loads(cluster.kubectl("get", "jobset", name, "-n", NAMESPACE, "-o", "json").stdout)
            uids[name] = body["metadata"]["uid"]
            identity = ObjectKey("jobset.x-k8s.io", "JobSet", NAMESPACE, name, "west")
            assert admit(ledger, policy, body, identity=identity).allowed
        mine = admit(ledger, policy, jobset("mine", "vision", 3),
                     identity=ObjectKey("jobset.x-k8s.io", "JobSet", NAMESPACE, "mine", "east"))
        assert [b.name for b in mine.reclaims] == [f"{NAMESPACE}/big"]
        east = Controller(KubeApi.from_config(str(cluster.kubeconfig)), lambda: policy, ledger, cluster="east")
        west = Controller(_as_member(cluster, tmp_path), lambda: policy, ledger, cluster="west")
        assert east.reclaimer is not None and west.reclaimer is not None

        def suspend_of(name: str) -> str:
            return cluster.kubectl("get", "jobset", name, "-n", NAMESPACE, "-o", "jsonpath={.spec.suspend}").stdout

        assert east.reclaimer.run_once() == 0 and suspend_of("big") == ""
        assert west.reclaimer.run_once() == 1
        assert west.reclaimer.counts == {("nlp", "suspended"): 1}
        assert (suspend_of("big"), suspend_of("small")) == ("true", "")
        events = json.loads(cluster.kubectl("get", "events", "-n", NAMESPACE, "-o", "json").stdout)["items"]
        assert [e["reason"] for e in events if e["involvedObject"]["uid"] == uids["big"]] == ["QuotaReclaimed"]
    finally:
        cluster.kubectl("delete", "jobsets", "--all", "-n", NAMESPACE, "--wait=false")
        cluster.kubectl("delete", "events", "--all", "-n", NAMESPACE, "--wait=false")
        cluster.kubectl("delete", "clusterrolebinding,clusterrole", "quotalang-watcher", check=False)
