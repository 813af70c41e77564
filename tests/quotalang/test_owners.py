"""Which owner pays: the shipped rules' `creates` clauses applied to controller references (issue 25 #1)."""

from __future__ import annotations

from typing import Any

import pytest

from quotalang.compiler import CompiledPolicy, compile_sources
from quotalang.loader import load_text
from quotalang.owners import OwnerRef, claimed_owner, verified_owner


@pytest.fixture(scope="module")
def policy() -> CompiledPolicy:
    return compile_sources(load_text('import "quotalang:policies"\n', "p.quota"))


def obj(api_version: str, kind: str, name: str, owner: tuple[str, str, str] | None = None,
        *, uid: str | None = None, controller: Any = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "uid": uid or f"uid-{name}"}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": owner[0], "kind": owner[1], "name": owner[2],
                                    "uid": f"uid-{owner[2]}", "controller": controller}]
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


# (object apiVersion, kind) controlled by (owner apiVersion, kind): what each operator really creates.
CREATED = [
    ("apps/v1", "ReplicaSet", "apps/v1", "Deployment"),
    ("v1", "Pod", "apps/v1", "ReplicaSet"),
    ("v1", "Pod", "apps/v1", "StatefulSet"),
    ("v1", "Pod", "batch/v1", "Job"),
    ("batch/v1", "Job", "batch/v1", "CronJob"),
    ("apps/v1", "ReplicaSet", "argoproj.io/v1alpha1", "Rollout"),
    ("v1", "Pod", "kubeflow.org/v1", "TFJob"),
    ("v1", "Pod", "kubeflow.org/v1", "PyTorchJob"),
    ("v1", "Pod", "kubeflow.org/v1", "MPIJob"),
    ("v1", "Pod", "kubeflow.org/v2beta1", "MPIJob"),
    ("batch/v1", "Job", "kubeflow.org/v2beta1", "MPIJob"),  # mpi-operator's launcher Job
    ("v1", "Pod", "ray.io/v1", "RayCluster"),
    ("ray.io/v1", "RayCluster", "ray.io/v1", "RayJob"),
    ("batch/v1", "Job", "ray.io/v1", "RayJob"),  # the submitter
    ("apps/v1", "StatefulSet", "leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
    ("batch/v1", "Job", "jobset.x-k8s.io/v1alpha2", "JobSet"),
]


@pytest.mark.parametrize(("api", "kind", "owner_api", "owner_kind"), CREATED)
def test_what_an_operator_creates_is_claimed_by_it(
    policy: CompiledPolicy, api: str, kind: str, owner_api: str, owner_kind: str
) -> None:
    claim = claimed_owner(policy, obj(api, kind, "child", (owner_api, owner_kind, "parent")))
    assert claim == OwnerRef(owner_api, owner_kind, "parent", "uid-parent")


NOT_CREATED = [
    ("apps/v1", "Deployment", "v1", "Pod"),  # the attack: a 100m Pod "controls" a 64-GPU Deployment
    ("apps/v1", "Deployment", "apps/v1", "Deployment"),
    ("v1", "Pod", "apps/v1", "Deployment"),  # Deployments create ReplicaSets, not Pods
    ("kubeflow.org/v1", "TFJob", "batch/v1", "Job"),
    ("batch/v1", "Job", "ray.io/v1", "RayCluster"),  # the Redis clean-up Job is not in the rule: charged
    ("ray.io/v1", "RayJob", "ray.io/v1", "RayCluster"),
    ("v1", "Pod", "example.com/v1", "Unknown"),  # no rule for the owner
    ("v1", "Pod", "apps/v1beta2", "ReplicaSet"),  # a version the policy has no rule for
]


@pytest.mark.parametrize(("api", "kind", "owner_api", "owner_kind"), NOT_CREATED)
def test_an_owner_whose_rule_does_not_create_the_kind_is_no_claim(
    policy: CompiledPolicy, api: str, kind: str, owner_api: str, owner_kind: str
) -> None:
    assert claimed_owner(policy, obj(api, kind, "child", (owner_api, owner_kind, "parent"))) is None


def test_the_created_kind_matches_across_versions(policy: CompiledPolicy) -> None:
    """A kind is its group and name: a `batch/v2` Job of a CronJob is still the CronJob's."""
    claim = claimed_owner(policy, obj("batch/v2", "Job", "run", ("batch/v1", "CronJob", "nightly")))
    assert claim is not None and claim.kind == "CronJob"


@pytest.mark.parametrize(
    "ref",
    [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u"},  # no controller: true
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": "true"},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "controller": True},  # no uid
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "", "uid": "u", "controller": True},
        {"apiVersion": "apps/v1", "kind": ["ReplicaSet"], "name": "rs", "uid": "u", "controller": True},
        "not a mapping",
    ],
)
def test_malformed_references_are_no_claim(policy: CompiledPolicy, ref: Any) -> None:
    pod = obj("v1", "Pod", "p")
    pod["metadata"]["ownerReferences"] = [ref]
    assert claimed_owner(policy, pod) is None


def test_only_the_first_controller_reference_counts(policy: CompiledPolicy) -> None:
    pod = obj("v1", "Pod", "p")
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Node", "name": "n", "uid": "u0"},  # not a controller: skipped
        {"apiVersion": "example.com/v1", "kind": "Mine", "name": "m", "uid": "u1", "controller": True},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u2", "controller": True},
    ]
    assert claimed_owner(policy, pod) is None


def _finder(*known: dict[str, Any]) -> Any:
    by = {(o["kind"], o["metadata"]["name"]): o for o in known}
    return lambda ref: by.get((ref.kind, ref.name))


def test_verified_owner_needs_the_owner_known_with_its_uid(policy: CompiledPolicy) -> None:
    rs = obj("apps/v1", "ReplicaSet", "web-1", ("apps/v1", "Deployment", "web"))
    assert verified_owner(policy, rs, _finder()) is None  # unknown owner
    assert verified_owner(policy, rs, _finder(obj("apps/v1", "Deployment", "web", uid="other"))) is None
    claim = verified_owner(policy, rs, _finder(obj("apps/v1", "Deployment", "web")))
    assert claim == OwnerRef("apps/v1", "Deployment", "web", "uid-web")


def test_an_lws_worker_statefulset_is_claimed_through_its_leader_pod(policy: CompiledPolicy) -> None:
    """LWS → leader StatefulSet → leader Pod → worker StatefulSet (lws pod_controller.go)."""
    lws = obj("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "llm")
    leaders = obj("apps/v1", "StatefulSet", "llm", ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", "llm"))
    leaders["metadata"]["uid"] = "uid-llm-sts"
    leaders["metadata"]["ownerReferences"][0]["uid"] = "uid-llm"
    leader = obj("v1", "Pod", "llm-0", ("apps/v1", "StatefulSet", "llm"))
    leader["metadata"]["ownerReferences"][0]["uid"] = "uid-llm-sts"
    workers = obj("apps/v1", "StatefulSet", "llm-0", ("v1", "Pod", "llm-0"))
    claim = claimed_owner(policy, workers)
    assert claim is not None and claim.kind == "Pod"
    assert claim.through == frozenset({("leaderworkerset.x-k8s.io", "LeaderWorkerSet")})
    by = {("LeaderWorkerSet", "llm"): lws, ("StatefulSet", "llm"): leaders, ("Pod", "llm-0"): leader}
    find = lambda ref: by.get((ref.kind, ref.name))  # noqa: E731
    assert verified_owner(policy, workers, find) == claim
    # A tenant's bare Pod (charged, known) controlling a StatefulSet: no LWS above it, no claim.
    bare = obj("v1", "Pod", "mine")
    sts = obj("apps/v1", "StatefulSet", "big", ("v1", "Pod", "mine"))
    assert verified_owner(policy, sts, _finder(bare)) is None
    # Nor a Deployment's Pod: its chain ends at a Deployment, not an LWS.
    dep = obj("apps/v1", "Deployment", "web")
    rs = obj("apps/v1", "ReplicaSet", "web-1", ("apps/v1", "Deployment", "web"))
    pod = obj("v1", "Pod", "web-1-x", ("apps/v1", "ReplicaSet", "web-1"))
    sts2 = obj("apps/v1", "StatefulSet", "big", ("v1", "Pod", "web-1-x"))
    assert verified_owner(policy, sts2, _finder(dep, rs, pod)) is None
    # And a leader whose StatefulSet is unknown breaks the chain.
    del by[("StatefulSet", "llm")]
    assert verified_owner(policy, workers, find) is None
