"""The shipped kind library (`policies/`) against the example organisation.

Every shipped kind has a workload in `examples/workloads/`; each test loads it
and checks the charged usage against numbers computed by hand (the arithmetic
is in the comments, and in each YAML file's header). The example policy is in
`examples/policies/` (tree in `root.quota`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from quotalang import compile_policy
from quotalang.evaluator import evaluate
from quotalang.quantity import parse_quantity
from quotalang.usage import workload_usage

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_POLICY = REPO / "examples" / "policies"
WORKLOADS = REPO / "examples" / "workloads"

GPU = "requests.nvidia.com/gpu"

# One example workload per shipped kind.
KIND_FILES = {
    ("v1", "Pod"): "pod.yaml",
    ("apps/v1", "Deployment"): "deployment.yaml",
    ("apps/v1", "ReplicaSet"): "replicaset.yaml",
    ("apps/v1", "StatefulSet"): "statefulset.yaml",
    ("batch/v1", "Job"): "job.yaml",
    ("batch/v1", "CronJob"): "cronjob.yaml",
    ("argoproj.io/v1alpha1", "Rollout"): "rollout.yaml",
    ("kubeflow.org/v1", "TFJob"): "tfjob.yaml",
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob.yaml",
    ("kubeflow.org/v1", "MPIJob"): "mpijob-v1.yaml",
    ("kubeflow.org/v2beta1", "MPIJob"): "mpijob-v2beta1.yaml",
    ("ray.io/v1", "RayCluster"): "raycluster.yaml",
    ("ray.io/v1", "RayJob"): "rayjob.yaml",
    ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"): "leaderworkerset.yaml",
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.yaml",
}

# The leaf group each example workload is labelled into, and its tree path.
GROUP_PATHS = {
    "pod.yaml": "root/ai-platform/nlp/alice",
    "deployment.yaml": "root/online-services/search/frank",
    "replicaset.yaml": "root/online-services/search/grace",
    "statefulset.yaml": "root/data/etl/mallory",
    "job.yaml": "root/data/etl/judy",
    "cronjob.yaml": "root/data/analytics/niaj",
    "rollout.yaml": "root/online-services/ads/heidi",
    "tfjob.yaml": "root/ai-platform/nlp/bob",
    "pytorchjob.yaml": "root/ai-platform/nlp/alice",
    "mpijob-v1.yaml": "root/ai-platform/nlp/carol",
    "mpijob-v2beta1.yaml": "root/ai-platform/vision/dave",
    "raycluster.yaml": "root/ai-platform/vision/erin",
    "rayjob.yaml": "root/ai-platform/vision/dave",
    "leaderworkerset.yaml": "root/ai-platform/nlp/carol",
    "jobset.yaml": "root/ai-platform/nlp/bob",
}


@pytest.fixture(scope="module")
def policy() -> Any:
    return compile_policy(str(EXAMPLE_POLICY))


def load(name: str) -> dict[str, Any]:
    with (WORKLOADS / name).open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


def Q(text: str) -> Any:
    return parse_quantity(text)


def expect(usage: dict[str, Any], expected: dict[str, str]) -> None:
    """Every expected key is charged with exactly the expected quantity."""
    for key, value in expected.items():
        assert key in usage, f"{key} not charged; charged: {sorted(usage)}"
        assert usage[key] == Q(value), f"{key}: charged {usage[key]}, expected {value}"


def models_of(usage: dict[str, Any], base: str) -> set[str]:
    """The model suffixes charged for a base key: {'A100'} for requests.nvidia.com/gpu.A100."""
    return {k[len(base) + 1 :] for k in usage if k.startswith(base + ".")}


# --------------------------------------------------------------------------- the example policy


def test_example_policy_compiles_cleanly(policy: Any) -> None:
    assert len(policy.groups) == 22  # root, 3 platforms, 6 teams, 12 people
    assert policy.warnings == ()
    assert policy.settings.group_label == "biz.group.resource.quota"
    assert policy.settings.unlabelled == "deny"


def test_example_tree_paths_and_modes(policy: Any) -> None:
    assert policy.groups["alice"].path == "root/ai-platform/nlp/alice"
    assert policy.groups["judy"].path == "root/data/etl/judy"
    # vision runs in warn mode, ads in audit mode; people inherit it.
    assert policy.groups["vision"].mode == "warn"
    assert policy.groups["erin"].mode == "warn"
    assert policy.groups["ads"].mode == "audit"
    assert policy.groups["heidi"].mode == "audit"
    assert policy.groups["bob"].mode == "enforce"


def test_library_covers_every_kind_with_an_example(policy: Any) -> None:
    assert set(policy.kinds) == set(KIND_FILES)
    for (api_version, kind), name in KIND_FILES.items():
        obj = load(name)
        assert (obj["apiVersion"], obj["kind"]) == (api_version, kind), name


@pytest.mark.parametrize("name", sorted(GROUP_PATHS))
def test_every_example_workload_is_admitted_into_its_group(policy: Any, name: str) -> None:
    decision = evaluate(policy, load(name), operation="CREATE")
    assert decision.allowed, decision.message
    assert decision.path == GROUP_PATHS[name]
    assert decision.violations == []
    assert decision.warnings == []  # none is within 90% of any limit from empty usage


# --------------------------------------------------------------------------- core kinds


def test_pod_with_sidecar_and_init_container(policy: Any) -> None:
    usage = workload_usage(policy, load("pod.yaml")).quantities()
    # requests: app containers + sidecars vs each init container + sidecars before it
    #   cpu     max(jupyter 4 + log-shipper 0.5, fetch-data 6 + log-shipper 0.5) = 6.5
    #   memory  max(16Gi + 512Mi, 4Gi + 512Mi) = 16.5Gi = 16896Mi
    # limits:
    #   cpu     max(8 + 1, 6 + 1) = 9
    #   memory  max(32Gi + 1Gi, 4Gi + 1Gi) = 33Gi
    # gpu: jupyter 1 (cpu-type A3, gpu-type A30; no memory-type label)
    expected = {
        "cpu": "6500m",
        "requests.cpu": "6500m",
        "limits.cpu": "9",
        "cpu.A3": "6500m",
        "requests.cpu.A3": "6500m",
        "limits.cpu.A3": "9",
        "memory": "16896Mi",
        "requests.memory": "16896Mi",
        "limits.memory": "33Gi",
        GPU: "1",
        f"{GPU}.A30": "1",
        "pods": "1",
        "count/pods": "1",
    }
    expect(usage, expected)
    assert set(usage) == set(expected)  # nothing else: no memory model, no limits.<gpu>


def test_deployment(policy: Any) -> None:
    usage = workload_usage(policy, load("deployment.yaml")).quantities()
    # per pod: api + envoy = requests 2 + 0.5 cpu, 4Gi + 512Mi; limits 4 + 1 cpu, 8Gi + 1Gi
    expect(
        usage,
        {
            "requests.cpu": "15",  # 6 × 2.5
            "limits.cpu": "30",  # 6 × 5
            "limits.cpu.A4": "30",  # cpu-type A4
            "requests.memory": "27Gi",  # 6 × 4.5Gi
            "limits.memory": "54Gi",  # 6 × 9Gi
            "pods": "6",
        },
    )
    assert GPU not in usage


def test_deployment_replicas_default_to_one(policy: Any) -> None:
    obj = load("deployment.yaml")
    del obj["spec"]["replicas"]
    usage = workload_usage(policy, obj).quantities()
    expect(usage, {"pods": "1", "limits.cpu": "5", "requests.memory": "4608Mi"})  # 1 × (4Gi + 512Mi)


def test_deployment_rollout_needs_room_for_max_surge(policy: Any) -> None:
    old = load("deployment.yaml")
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example.com/search/api:2.32.0"
    # frank: limits.cpu.A4 hard 100; used 95 (this Deployment's 30 + 65 elsewhere).
    # The new template changes nothing in size (delta 0) but the rollout needs
    # room for maxSurge 2 × 5 cpu = 10 more: 95 + 10 = 105 > 100.
    used = {"frank": {"limits.cpu.A4": "95", "limits.cpu": "95"}}
    decision = evaluate(policy, new, operation="UPDATE", old=old, usage=used)
    assert not decision.allowed
    assert "limits.cpu.A4" in decision.message
    # A change that leaves the pod template alone needs no surge room.
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"]["tier"] = "frontend"
    decision = evaluate(policy, relabelled, operation="UPDATE", old=old, usage=used)
    assert decision.allowed, decision.message


def test_deployment_scale_charges_the_difference(policy: Any) -> None:
    deployment = load("deployment.yaml")
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "search-api", "namespace": "search"},
        "spec": {"replicas": 30},
    }
    # 6 → 30 replicas: limits.cpu.A4 +24 × 5 = +120; used 30 (the 6 replicas) + 120 = 150 > 100.
    used = {"frank": {"limits.cpu.A4": "30", "limits.cpu": "30"}}
    decision = evaluate(policy, scale, operation="UPDATE", usage=used, parent=deployment)
    assert not decision.allowed
    assert "limits.cpu.A4" in decision.message
    # 6 → 10 replicas: +4 × 5 = +20 → 50 of 100: fits.
    scale["spec"]["replicas"] = 10
    decision = evaluate(policy, scale, operation="UPDATE", usage=used, parent=deployment)
    assert decision.allowed, decision.message


def test_replicaset(policy: Any) -> None:
    usage = workload_usage(policy, load("replicaset.yaml")).quantities()
    expect(
        usage,
        {
            "requests.cpu": "3",  # 3 × 1
            "limits.cpu": "6",  # 3 × 2
            "limits.cpu.A2": "6",
            "requests.memory": "6Gi",  # 3 × 2Gi
            "limits.memory": "12Gi",  # 3 × 4Gi
            "pods": "3",
        },
    )


def test_statefulset(policy: Any) -> None:
    usage = workload_usage(policy, load("statefulset.yaml")).quantities()
    expect(
        usage,
        {
            "requests.cpu": "12",  # 3 × 4
            "limits.cpu": "12",
            "limits.cpu.A1": "12",
            "requests.memory": "96Gi",  # 3 × 32Gi
            "limits.memory": "96Gi",
            "limits.memory.highmem": "96Gi",  # memory-type highmem
            "pods": "3",
        },
    )
    assert not any(k.startswith("requests.storage") for k in usage)  # PVCs are not charged


def test_job_init_container_dominates(policy: Any) -> None:
    usage = workload_usage(policy, load("job.yaml")).quantities()
    # per pod: max(app, init): cpu req max(1, 2) = 2, lim max(2, 2) = 2;
    #                          mem req max(2Gi, 8Gi) = 8Gi, lim max(4Gi, 8Gi) = 8Gi
    # parallelism 4 (completions 16 do not matter)
    expect(
        usage,
        {
            "requests.cpu": "8",  # 4 × 2
            "limits.cpu": "8",
            "limits.cpu.A2": "8",
            "requests.memory": "32Gi",  # 4 × 8Gi
            "limits.memory": "32Gi",
            "limits.memory.highmem": "32Gi",
            "pods": "4",
        },
    )


def test_job_parallelism_defaults_to_one(policy: Any) -> None:
    obj = load("job.yaml")
    del obj["spec"]["parallelism"]
    expect(workload_usage(policy, obj).quantities(), {"pods": "1", "requests.cpu": "2", "requests.memory": "8Gi"})


def test_cronjob_charges_one_run(policy: Any) -> None:
    usage = workload_usage(policy, load("cronjob.yaml")).quantities()
    # one Job of parallelism 2 × (req 2 cpu / 8Gi / 1 GPU, lim 4 cpu / 16Gi / 1 GPU)
    expect(
        usage,
        {
            "requests.cpu": "4",  # 2 × 2
            "limits.cpu": "8",  # 2 × 4
            "limits.cpu.A3": "8",
            "requests.memory": "16Gi",  # 2 × 8Gi
            "limits.memory": "32Gi",  # 2 × 16Gi
            GPU: "2",  # 2 × 1
            f"{GPU}.T4": "2",
            "pods": "2",
        },
    )


def test_cronjob_parallelism_defaults_to_one(policy: Any) -> None:
    obj = load("cronjob.yaml")
    del obj["spec"]["jobTemplate"]["spec"]["parallelism"]
    expect(workload_usage(policy, obj).quantities(), {"pods": "1", GPU: "1", "limits.cpu": "4"})


# --------------------------------------------------------------------------- argo


def test_rollout(policy: Any) -> None:
    usage = workload_usage(policy, load("rollout.yaml")).quantities()
    expect(
        usage,
        {
            "requests.cpu": "4",  # 4 × 1
            "limits.cpu": "8",  # 4 × 2
            "limits.cpu.A4": "8",
            "requests.memory": "8Gi",  # 4 × 2Gi
            "limits.memory": "16Gi",  # 4 × 4Gi
            "pods": "4",
        },
    )


def test_rollout_over_quota_in_audit_mode_is_allowed_and_recorded(policy: Any) -> None:
    obj = load("rollout.yaml")
    obj["spec"]["replicas"] = 60
    # 60 × 2 = 120 limit cores > heidi's limits.cpu 100 (and 120 > limits.cpu.A4 50)
    decision = evaluate(policy, obj, operation="CREATE")
    assert decision.allowed
    assert decision.mode == "audit"
    assert {v.resource for v in decision.violations} >= {"limits.cpu", "limits.cpu.A4"}
    assert "root/online-services/ads/heidi" in decision.message


# --------------------------------------------------------------------------- kubeflow


def test_tfjob(policy: Any) -> None:
    usage = workload_usage(policy, load("tfjob.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "9",  # 1 chief × 1 + 2 workers × 4 (PS have none)
            f"{GPU}.A100": "9",
            "requests.cpu": "24",  # 1 × 4 + 2 PS × 2 + 2 × 8
            "limits.cpu": "24",
            "limits.cpu.A4": "24",
            "requests.memory": "160Gi",  # 16Gi + 2 × 8Gi + 2 × 64Gi
            "limits.memory": "160Gi",
            "pods": "5",  # 1 + 2 + 2
        },
    )


def test_tfjob_replicas_default_to_one(policy: Any) -> None:
    obj = load("tfjob.yaml")
    del obj["spec"]["tfReplicaSpecs"]["Worker"]["replicas"]
    # 1 chief × 1 + 1 worker × 4 = 5 GPUs; 1 + 2 + 1 = 4 pods
    expect(workload_usage(policy, obj).quantities(), {GPU: "5", "pods": "4"})


def test_model_keys_are_charged_with_generic_keys(policy: Any) -> None:
    usage = workload_usage(policy, load("tfjob.yaml")).quantities()
    # prefix rule: gpu-type A100 charges both the generic and the model key, and no other model
    assert usage[GPU] == usage[f"{GPU}.A100"] == Q("9")
    assert models_of(usage, GPU) == {"A100"}
    assert models_of(usage, "limits.cpu") == {"A4"}
    assert models_of(usage, "limits.memory") == set()  # no memory-type label

    obj = load("tfjob.yaml")
    # Either key can deny. bob: requests.nvidia.com/gpu 32, .A100 16.
    # A100 used 10: 10 + 9 = 19 > 16, while generic 10 + 9 = 19 ≤ 32.
    decision = evaluate(policy, obj, usage={"bob": {GPU: "10", f"{GPU}.A100": "10"}})
    assert not decision.allowed
    assert [v.resource for v in decision.violations] == [f"{GPU}.A100"]
    # Generic used 30 (by workloads without a gpu-type): 30 + 9 = 39 > 32, while A100 0 + 9 ≤ 16.
    decision = evaluate(policy, obj, usage={"bob": {GPU: "30"}})
    assert not decision.allowed
    assert [v.resource for v in decision.violations] == [GPU]


def test_tfjob_too_big_is_denied_naming_the_model_key(policy: Any) -> None:
    decision = evaluate(policy, load("tfjob-too-big.yaml"), operation="CREATE")
    # A100: 1 chief × 1 + 5 workers × 4 = 21 > bob's 16; generic 21 ≤ 32 fits.
    assert not decision.allowed
    assert decision.group == "bob"
    assert decision.path == "root/ai-platform/nlp/bob"
    assert decision.mode == "enforce"
    assert [v.resource for v in decision.violations] == [f"{GPU}.A100"]
    assert decision.usage[f"{GPU}.A100"] == Q("21")
    message = decision.message
    assert "root/ai-platform/nlp/bob" in message
    assert f"{GPU}.A100" in message
    assert "21" in message and "16" in message


def test_tfjob_denied_when_cash_is_spent(policy: Any) -> None:
    # bob has spent his 1000 GPU-hours this week: no new GPU workloads.
    spent = {"bob": {"cash": {GPU: "1000h"}}}
    decision = evaluate(policy, load("tfjob.yaml"), usage=spent)
    assert not decision.allowed
    assert GPU in decision.message


def test_pytorchjob(policy: Any) -> None:
    usage = workload_usage(policy, load("pytorchjob.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "8",  # (1 master + 3 workers) × 2
            f"{GPU}.A100": "8",
            "requests.cpu": "32",  # 4 × 8
            "limits.cpu.A4": "32",
            "requests.memory": "128Gi",  # 4 × 32Gi
            "pods": "4",
        },
    )


def test_elastic_pytorchjob_charges_workers_at_max_replicas(policy: Any) -> None:
    """The operator's HPA moves Worker.replicas up to elasticPolicy.maxReplicas through /scale (issue 25 #2)."""
    obj = load("pytorchjob.yaml")
    obj["spec"]["elasticPolicy"] = {"minReplicas": 1, "maxReplicas": 7}
    usage = workload_usage(policy, obj).quantities()
    # 1 master + 3 workers + (7 − 3) elastic workers = 8 pods × 2 GPUs
    expect(usage, {"pods": "8", GPU: "16", f"{GPU}.A100": "16"})
    obj["spec"]["elasticPolicy"] = {"maxReplicas": 2}  # below the declared 3: nothing more
    expect(workload_usage(policy, obj).quantities(), {"pods": "4", GPU: "8"})


def test_pytorchjob_warns_near_the_limit(policy: Any) -> None:
    # alice: A100 16; used 7 + 8 = 15 → 93% ≥ 90%: allowed, with a warning.
    decision = evaluate(policy, load("pytorchjob.yaml"), usage={"alice": {GPU: "7", f"{GPU}.A100": "7"}})
    assert decision.allowed
    assert any(f"{GPU}.A100" in w for w in decision.warnings), decision.warnings
    assert all(len(w) <= 120 for w in decision.warnings)


def test_mpijob_v1(policy: Any) -> None:
    usage = workload_usage(policy, load("mpijob-v1.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "8",  # 2 workers × 4 (launcher none)
            f"{GPU}.A100": "8",
            "requests.cpu": "33",  # 1 launcher × 1 + 2 × 16
            "limits.cpu.A4": "33",
            "requests.memory": "130Gi",  # 2Gi + 2 × 64Gi
            "pods": "3",
        },
    )


def test_mpijob_v2beta1(policy: Any) -> None:
    usage = workload_usage(policy, load("mpijob-v2beta1.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "8",  # 4 workers × 2
            f"{GPU}.V100": "8",
            "requests.cpu": "26",  # 1 launcher × 2 + 4 × 6
            "limits.cpu.A3": "26",
            "requests.memory": "100Gi",  # 4Gi + 4 × 24Gi
            "pods": "5",
        },
    )


@pytest.mark.parametrize("name", ["mpijob-v1.yaml", "mpijob-v2beta1.yaml"])
def test_mpijob_defaults_launcher_one_worker_zero(policy: Any, name: str) -> None:
    obj = load(name)
    del obj["spec"]["mpiReplicaSpecs"]["Launcher"]["replicas"]
    del obj["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
    usage = workload_usage(policy, obj).quantities()
    # Launcher defaults to 1, Worker to 0 (both operators): only the launcher, no GPUs.
    expect(usage, {"pods": "1"})
    assert GPU not in usage


def test_mpijob_v2beta1_over_quota_in_warn_mode_is_allowed_with_warnings(policy: Any) -> None:
    obj = load("mpijob-v2beta1.yaml")
    obj["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] = 10
    # V100: 10 × 2 = 20 > dave's 16; vision is in mode warn.
    decision = evaluate(policy, obj, operation="CREATE")
    assert decision.allowed
    assert decision.mode == "warn"
    assert f"{GPU}.V100" in {v.resource for v in decision.violations}
    assert any(f"{GPU}.V100" in w for w in decision.warnings), decision.warnings


# --------------------------------------------------------------------------- ray


def test_raycluster_models_from_template_labels(policy: Any) -> None:
    usage = workload_usage(policy, load("raycluster.yaml")).quantities()
    expect(
        usage,
        {
            "requests.cpu": "36",  # head 4 + 4 × 4 + 2 × 8
            "limits.cpu": "36",
            "limits.cpu.A4": "36",  # workload label: every pod
            "requests.memory": "144Gi",  # 16Gi + 4 × 16Gi + 2 × 32Gi
            GPU: "8",  # 4 × 1 + 2 × 2
            f"{GPU}.T4": "4",  # t4-workers template label
            f"{GPU}.V100": "4",  # v100-workers template label
            "pods": "7",  # 1 head + 4 + 2 (maxReplicas 8 + 4 not reserved)
        },
    )
    assert models_of(usage, GPU) == {"T4", "V100"}


def test_ray_worker_groups_are_named_by_group_name(policy: Any) -> None:
    parts = workload_usage(policy, load("raycluster.yaml")).parts
    assert [(p.name, p.replicas) for p in parts] == [("head", 1), ("t4-workers", 4), ("v100-workers", 2)]


def test_raycluster_replicas_default_zero_and_num_of_hosts(policy: Any) -> None:
    obj = load("raycluster.yaml")
    del obj["spec"]["workerGroupSpecs"][0]["replicas"]  # t4-workers: CRD default 0, raised to minReplicas 1
    obj["spec"]["workerGroupSpecs"][1]["numOfHosts"] = 2  # v100-workers: 2 replicas × 2 hosts
    usage = workload_usage(policy, obj).quantities()
    # pods: 1 head + clamp(0, 1, 8) = 1 + 2 × 2 = 6; GPUs: t4 1 × 1, v100 4 × 2 = 8
    expect(usage, {"pods": "6", GPU: "9", f"{GPU}.V100": "8", f"{GPU}.T4": "1"})


def _ray_workers(policy: Any, name: str, spec_path: tuple[str, ...], **group: int) -> list[tuple[str, int]]:
    """(part, pods) of `name` with its first worker group's counts replaced by `group` (absent: removed)."""
    obj = load(name)
    node: Any = obj
    for segment in spec_path:
        node = node[segment]
    worker = node["workerGroupSpecs"][0]
    for field in ("replicas", "minReplicas", "maxReplicas", "numOfHosts"):
        worker.pop(field, None)
        if field in group:
            worker[field] = group[field]
    return [(p.name, p.replicas) for p in workload_usage(policy, obj).parts]


@pytest.mark.parametrize(
    ("group", "pods"),
    [
        ({"replicas": 0, "minReplicas": 64}, 64),  # issue 25 #2: KubeRay runs minReplicas
        ({"replicas": 3, "minReplicas": 1, "maxReplicas": 8}, 3),
        ({"replicas": 12, "minReplicas": 1, "maxReplicas": 8}, 8),  # above maxReplicas: maxReplicas
        ({"replicas": 2, "minReplicas": 4, "maxReplicas": 8, "numOfHosts": 4}, 16),  # 4 × 4 hosts
        ({"minReplicas": 5}, 5),  # replicas absent (CRD default 0) → minReplicas
        ({"replicas": 7}, 7),  # no bounds: minReplicas 0, maxReplicas 2147483647
        ({"replicas": 1, "minReplicas": 6, "maxReplicas": 2}, 6),  # crossed bounds: the larger, minReplicas
        ({"replicas": 3, "numOfHosts": 0}, 0),  # an explicit 0 hosts runs nothing
    ],
)
def test_ray_worker_groups_charge_what_kuberay_runs(policy: Any, group: dict[str, int], pods: int) -> None:
    """clamp(replicas, minReplicas, maxReplicas) × numOfHosts, as GetWorkerGroupDesiredReplicas; the head is 1."""
    cluster = _ray_workers(policy, "raycluster.yaml", ("spec",), **group)
    assert cluster == [("head", 1), ("t4-workers", pods), ("v100-workers", 2)]
    job = _ray_workers(policy, "rayjob.yaml", ("spec", "rayClusterSpec"), **group)
    assert job[0] == ("head", 1) and job[1][1] == pods and job[-1] == ("submitter", 1)


def test_raycluster_min_replicas_charges_gpus(policy: Any) -> None:
    """The issue's case in figures: replicas 0, minReplicas 64 of a 1-GPU T4 group."""
    obj = load("raycluster.yaml")
    obj["spec"]["workerGroupSpecs"][0].update(replicas=0, minReplicas=64, maxReplicas=64)
    usage = workload_usage(policy, obj).quantities()
    # 64 × 1 T4 + 2 × 2 V100 = 68 GPUs; pods 1 + 64 + 2 = 67
    expect(usage, {GPU: "68", f"{GPU}.T4": "64", "pods": "67"})


def test_rayjob(policy: Any) -> None:
    usage = workload_usage(policy, load("rayjob.yaml")).quantities()
    expect(
        usage,
        {
            "requests.cpu": "10500m",  # head 2 + 2 × 4 + submitter 0.5
            "limits.cpu": "11",  # 2 + 2 × 4 + 1
            "limits.cpu.A3": "11",
            "requests.memory": "41Gi",  # 8Gi + 2 × 16Gi + 1Gi
            GPU: "2",  # 2 × 1
            f"{GPU}.A30": "2",
            "pods": "4",  # head + 2 workers + submitter
        },
    )


def test_rayjob_without_submitter_template_or_with_existing_cluster(policy: Any) -> None:
    obj = load("rayjob.yaml")
    del obj["spec"]["submitterPodTemplate"]
    # KubeRay's default submitter is not in the object: head + 2 workers only.
    expect(workload_usage(policy, obj).quantities(), {"pods": "3", "requests.cpu": "10"})  # 2 + 2 × 4

    on_existing = load("rayjob.yaml")
    del on_existing["spec"]["rayClusterSpec"]
    del on_existing["spec"]["submitterPodTemplate"]
    on_existing["spec"]["clusterSelector"] = {"ray.io/cluster": "shared"}
    assert workload_usage(policy, on_existing).quantities() == {}


# --------------------------------------------------------------------------- lws, jobset


def test_leaderworkerset(policy: Any) -> None:
    usage = workload_usage(policy, load("leaderworkerset.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "12",  # 2 leaders × 2 + 2 groups × (3 - 1) workers × 2
            f"{GPU}.A100": "12",
            "requests.cpu": "32",  # 2 × 8 + 4 × 4
            "limits.cpu.A4": "32",
            "requests.memory": "192Gi",  # 2 × 32Gi + 4 × 32Gi
            "pods": "6",  # 2 × 3
        },
    )


def test_leaderworkerset_leader_falls_back_to_worker_template(policy: Any) -> None:
    obj = load("leaderworkerset.yaml")
    del obj["spec"]["leaderWorkerTemplate"]["leaderTemplate"]
    # every pod from workerTemplate: 6 × (4 cpu, 2 GPU)
    expect(workload_usage(policy, obj).quantities(), {"pods": "6", "requests.cpu": "24", GPU: "12"})

    obj = load("leaderworkerset.yaml")
    del obj["spec"]["leaderWorkerTemplate"]["size"]
    del obj["spec"]["replicas"]
    # size 1, replicas 1: one leader, no workers
    expect(workload_usage(policy, obj).quantities(), {"pods": "1", "requests.cpu": "8", GPU: "2"})


def test_leaderworkerset_scale_adds_whole_groups(policy: Any) -> None:
    lws = load("leaderworkerset.yaml")
    scale = {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "llm-serve", "namespace": "nlp"},
        "spec": {"replicas": 3},
    }
    # 2 → 3 groups: +1 leader × 2 + 2 workers × 2 = +6 A100; used 12 + 6 = 18 > carol's 16.
    used = {"carol": {GPU: "12", f"{GPU}.A100": "12"}}
    decision = evaluate(policy, scale, operation="UPDATE", usage=used, parent=lws)
    assert not decision.allowed
    assert f"{GPU}.A100" in decision.message


def test_jobset(policy: Any) -> None:
    usage = workload_usage(policy, load("jobset.yaml")).quantities()
    expect(
        usage,
        {
            GPU: "8",  # workers: 2 replicas × parallelism 4 × 1
            f"{GPU}.A100": "8",
            "requests.cpu": "34",  # driver 1 × 1 (parallelism default) × 2 + 8 × 4
            "limits.cpu.A4": "34",
            "requests.memory": "136Gi",  # 8Gi + 8 × 16Gi
            "pods": "9",  # 1 + 8
        },
    )


def test_jobset_replicas_default_to_one(policy: Any) -> None:
    obj = load("jobset.yaml")
    del obj["spec"]["replicatedJobs"][1]["replicas"]
    # workers: 1 replica × parallelism 4 → 1 + 4 = 5 pods, 4 GPUs
    expect(workload_usage(policy, obj).quantities(), {"pods": "5", GPU: "4"})


# --------------------------------------------------------------------------- other objects


def test_kind_without_rule_charges_nothing(policy: Any) -> None:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "nlp", "labels": {"biz.group.resource.quota": "alice"}},
        "data": {"batch_size": "256"},
    }
    assert workload_usage(policy, config_map).quantities() == {}
    decision = evaluate(policy, config_map, operation="CREATE")
    assert decision.allowed
    assert decision.usage == {}


def test_unlabelled_deployment_is_denied(policy: Any) -> None:
    decision = evaluate(policy, load("deployment-unlabelled.yaml"), operation="CREATE")
    assert not decision.allowed
    assert "biz.group.resource.quota" in decision.message


def test_unknown_group_is_denied_with_near_names(policy: Any) -> None:
    decision = evaluate(policy, load("deployment-unknown-group.yaml"), operation="CREATE")
    assert not decision.allowed
    assert "alcie" in decision.message
    assert "alice" in decision.message
